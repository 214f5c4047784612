"""Each parameter declared once (issue 16, part 1): the option table, --help, --config keys,
validation and the TUI's form are derived from the config fields (facequant.params), so no
default, range or choice list is written twice, and a new option is one field."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from facequant import config, params
from facequant.cli import common, main
from facequant.cli.main import build_parser
from facequant.errors import FacequantError
from facequant.params import param
from facequant.ranges import Range

ROOT = Path(__file__).resolve().parent.parent
#: Options that set no config field: where results go and how the run talks, and the TUI's own.
RUN_ONLY = {"config", "out", "force", "quiet", "results", "runs", "diagnostics"}


def config_classes() -> list[type]:
    """Every config a command builds from options."""
    from facequant.analysis.accuracy_control import AccuracyControlSettings
    from facequant.analysis.diagnose.run import DiagnoseConfig
    from facequant.analysis.fidelity import ValidateConfig
    from facequant.analysis.model_check import ModelCheckConfig
    from facequant.analysis.recommend.directory import RecommendConfig
    from facequant.analysis.search import SearchSettings
    from facequant.analysis.studies import StudyConfig
    from facequant.backends.quantize.export import PrecisionExportConfig
    from facequant.simulate.camera import Degradation
    from facequant.sweep.config import SweepConfig

    return [SweepConfig, Degradation, StudyConfig, DiagnoseConfig, SearchSettings, AccuracyControlSettings,
            RecommendConfig, ValidateConfig, PrecisionExportConfig, ModelCheckConfig]


def command_parsers() -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every command of the real parser, `models check` included."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub.choices.items():
        nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        for inner in nested:
            yield from ((f"{name} {n}", p) for n, p in inner.choices.items())
        if not nested:
            yield name, parser


def declaration(cls: type, path: str) -> tuple[dataclasses.Field[object], params.Param | params.Nested]:
    """The field a dotted path names (sweep.degradation.jpeg_quality) and its declaration."""
    head, _, rest = path.partition(".")
    f, spec = next((f, s) for f, s in params.declared(cls) if f.name == head)
    return declaration(spec.cls, rest) if rest else (f, spec)  # type: ignore[union-attr]


# --------------------------------------------------------------------------- (1) said once


def test_every_option_is_its_field_declaration():
    """Every command's options: a field's default (as the command line writes it), its choice
    list (the same object) and its converter; nothing but the run options is declared by hand."""
    seen = 0
    for command, parser in command_parsers():
        opts = parser.get_default("options") or ()
        actions = {a.dest: a for a in parser._actions}
        for o in opts:
            if o.field is None:
                assert o.name in RUN_ONLY, f"{command} --{o.name}: an option that sets no config field"
                continue
            assert o.config in config_classes(), (command, o.name)
            f, spec = declaration(o.config, o.field)
            assert isinstance(spec, params.Param)
            default = params.field_default(f)
            if spec.flag or spec.repeat or not spec.cli_default:
                assert o.default is None
            elif default is dataclasses.MISSING:
                assert o.default == spec.fallback, (command, o.name)
            else:
                text = ",".join(map(str, default)) if isinstance(default, tuple) else default
                assert o.default == text, (command, o.name, o.default, default)
            if o.choices is not None:
                assert o.choices is spec.choices, (command, o.name)  # the one tuple, not a copy
            held = parser._held[o.dest] if parser._held and o.dest in parser._held else actions[o.dest]  # type: ignore[attr-defined]
            assert held.default == ([] if o.repeat else (False if o.flag else o.default)), (command, o.name)
            seen += 1
    assert seen > 200


def test_help_shows_each_default_once():
    """Every option with a default says it in --help, as the field has it, and says no other."""
    for command, parser in command_parsers():
        for o in parser.get_default("options") or ():
            text = " ".join(o.help_text().split())
            shown = config.shown_default(o.default)
            if shown is not None and not o.flag:
                assert f"(default {shown}" in text, (command, o.name, text)
            for stated in re.findall(r"\(default (-?[0-9][0-9.e-]*)\b", text):
                assert stated == shown, f"{command} --{o.name}: help says default {stated}, the field {shown}"


def _source_trees() -> Iterator[tuple[Path, ast.AST]]:
    for path in sorted([*(ROOT / "facequant").rglob("*.py"), *(ROOT / "tui").rglob("*.py")]):
        yield path, ast.parse(path.read_text(encoding="utf-8"))


def test_each_choice_list_and_range_is_written_once():
    """One literal per set of choices (calibration methods, protocols, ...) and per range in
    the code base: a second copy is the drift this test exists to stop."""
    choice_lists = {frozenset(spec.choices) for cls in config_classes() for _, spec in params.declared(cls)
                    if isinstance(spec, params.Param) and spec.choices is not None}
    literals: Counter[frozenset[str]] = Counter()
    ranges: Counter[str] = Counter()
    where: dict[object, list[str]] = {}
    for path, tree in _source_trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.Tuple | ast.List | ast.Set) and len(node.elts) >= 2 and all(
                    isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
                items = frozenset(e.value for e in node.elts)  # type: ignore[attr-defined]
                if items in choice_lists:
                    literals[items] += 1
                    where.setdefault(items, []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Range"
                    and all(isinstance(a, ast.Constant) for a in node.args)):
                key = ast.dump(node)
                ranges[key] += 1
                where.setdefault(key, []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert set(literals) == choice_lists  # the scan sees every declared list
    twice = {k: where[k] for k, n in literals.items() if n > 1}
    assert not twice, f"choice lists written more than once: {twice}"
    twice = {k: where[k] for k, n in ranges.items() if n > 1}
    assert not twice, f"ranges written more than once: {list(twice.values())}"


def test_calibration_methods_one_tuple():
    """The names users type and ONNX Runtime's methods: one tuple, one mapping keyed by it."""
    from facequant.analysis.studies import StudyConfig
    from facequant.backends.quantize.recipes import CALIBRATION_METHODS as ORT_METHODS
    from facequant.ranges import CALIBRATION_METHODS
    from facequant.sweep.config import SweepConfig

    assert tuple(ORT_METHODS) == CALIBRATION_METHODS
    for cls, name in ((SweepConfig, "calibration_method"), (StudyConfig, "methods")):
        _, spec = declaration(cls, name)
        assert spec.choices is CALIBRATION_METHODS  # type: ignore[union-attr]


def test_defaults_not_written_twice__far():
    """The issue's example: --far's default is SweepConfig.target_far's, whatever it becomes."""
    from facequant.sweep.config import SweepConfig

    far = next(o for o in config.sweep_options() if o.name == "far")
    assert far.default == SweepConfig.__dataclass_fields__["target_far"].default == 1e-3
    assert "(default 0.001)" in far.help_text()


# --------------------------------------------------------------------------- (2) one field, everywhere


@dataclass(frozen=True)
class ScratchConfig:
    """A config with one declared field, as a contributor would add one."""

    sharpness: float = param(2.5, help="how sharp the scratch is", group="scratch", range=Range(0.0, 10.0))

    def __post_init__(self) -> None:
        params.validate(self, "scratch")


def scratch_parser(tmp_path: Path) -> argparse.ArgumentParser:
    """A `scratch` command declared as every command is: its config's options, its run options."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    p = common.command(sub, "scratch", lambda _: config.options_for("scratch", ScratchConfig))
    p.set_defaults(func=lambda args: 0)
    return parser


def test_scratch_option__help_config_validation(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    parser = scratch_parser(tmp_path)
    with pytest.raises(SystemExit):
        parser.parse_args(["scratch", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "scratch: --sharpness SHARPNESS how sharp the scratch is (default 2.5)" in text
    # the command line, and a --config key, through the same converter; the command line wins
    args = parser.parse_args(["scratch", "--sharpness", "4"])
    assert params.build(ScratchConfig, common.values(args)) == ScratchConfig(4.0)
    cfg = tmp_path / "s.yaml"
    cfg.write_text("sharpness: 7\n")
    assert params.build(ScratchConfig, common.values(parser.parse_args(["scratch", "--config", str(cfg)]))).sharpness == 7
    assert params.build(ScratchConfig, common.values(parser.parse_args(["scratch"]))) == ScratchConfig()
    # validation: where parsed (one line naming the option) and in the core (naming the field)
    with pytest.raises(FacequantError, match=r"argument --sharpness: must be a number in \[0, 10\], got '11'"):
        parser.parse_args(["scratch", "--sharpness", "11"])
    cfg.write_text("sharpness: -1\n")
    with pytest.raises(FacequantError, match=f"{re.escape(str(cfg))}: sharpness: must be a number in"):
        common.values(parser.parse_args(["scratch", "--config", str(cfg)]))
    with pytest.raises(FacequantError, match=r"scratch: sharpness: must be a number in \[0, 10\], got 12"):
        ScratchConfig(12.0)


def test_scratch_option__exit_2_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]):
    import sys

    monkeypatch.setattr(sys.modules["facequant.cli.main"], "build_parser", lambda: scratch_parser(tmp_path))
    assert main(["scratch", "--sharpness", "nan"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "argument --sharpness" in err and "Traceback" not in err
    assert main(["scratch", "--sharpness", "3"]) == 0


def test_scratch_option__tui_prefill(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A field added to SweepConfig reaches the TUI: its --config key prefills the form's base
    config, and the form keeps it through an edit."""
    from facequant.sweep import config as sweep_module
    from tui import state

    @dataclass(frozen=True)
    class WithScratch(sweep_module.SweepConfig):
        sharpness: float = param(2.5, help="how sharp the scratch is", group="scratch",
                                 range=Range(0.0, 10.0), commands=("sweep", "tui"))

    monkeypatch.setattr(sweep_module, "SweepConfig", WithScratch)
    monkeypatch.setattr(state, "SweepConfig", WithScratch)
    (tmp_path / "photos").mkdir()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"sharpness": 6.5, "data": str(tmp_path / "photos"), "distances": "1,2"}))
    setup = state.initial_setup(cfg, tmp_path / "runs")
    assert isinstance(setup.base, WithScratch) and setup.base.sharpness == 6.5
    edited = dataclasses.replace(setup, camera="720p-60")
    built, _ = state.config_from_setup(edited, tmp_path / "runs")
    assert (built.sharpness, built.camera, built.distances_m) == (6.5, "720p-60", (1.0, 2.0))  # type: ignore[attr-defined]
    cfg.write_text("sharpness: 11\n")
    with pytest.raises(FacequantError, match="sharpness"):
        state.initial_setup(cfg, tmp_path / "runs")
    # and the command line's `facequant tui --sharpness 3` prefills it, over the file
    import tui.app

    seen: dict[str, object] = {}
    monkeypatch.setattr(tui.app, "run_tui", lambda **kwargs: seen.update(kwargs) or 0)
    cfg.write_text(yaml.safe_dump({"sharpness": 6.5, "data": str(tmp_path / "photos")}))
    assert main(["tui", "--config", str(cfg), "--sharpness", "3"]) == 0
    assert seen["prefill"] == {"sharpness": 3.0}
    assert state.initial_setup(cfg, tmp_path / "runs", seen["prefill"]).base.sharpness == 3.0  # type: ignore[arg-type,attr-defined]


def test_models_check__same_options_and_config_as_sweep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]):
    """`models check` takes the sweep's declarations of --data, --preprocessing, --model-override,
    --crop-margin and --seed, and a --config file with the same keys (the command line wins)."""
    from facequant.sweep.config import SweepConfig

    seen: list[tuple[object, ...]] = []
    monkeypatch.setattr("facequant.analysis.model_check.run_check", lambda *a: seen.append(a))
    monkeypatch.setattr("facequant.render.check.render_check", lambda report: [])
    cfg = tmp_path / "check.yaml"
    cfg.write_text(yaml.safe_dump({"data": str(tmp_path), "crop-margin": 0.25, "model-override": {"std": 128},
                                   "preprocessing": "auto", "seed": 7, "photos": 12}))
    assert main(["models", "check", "m.onnx", "--config", str(cfg), "--seed", "3"]) == 0
    assert seen == [("m.onnx", str(tmp_path), "auto", {"std": 128}, 0.25, 3, 12)]
    sweep = {o.name: o for o in config.field_options(SweepConfig, "models check")}
    check = {o.name: o for _, p in command_parsers() if _ == "models check" for o in p.get_default("options")}
    assert set(sweep) <= set(check) and all(check[n].default == sweep[n].default for n in sweep)
    cfg.write_text("crop-margin: 2\n")
    assert main(["models", "check", "m.onnx", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{cfg}: crop-margin: must be a number in [0, 1]" in err
    cfg.write_text("far: 0.01\n")  # a sweep option models check does not take
    assert main(["models", "check", "m.onnx", "--config", str(cfg)]) == 2
    assert "unknown option 'far'" in capsys.readouterr().err
