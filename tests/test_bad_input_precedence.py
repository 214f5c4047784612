"""Bad-input corpus, precedence: defaults < --config < the command line, for every option of
every command, whether or not the command-line value equals the option's default. Generated
from the option table: each command's options (argparse's `options` default, set by
cli.common.command) times a sample per option name (SAMPLES); an option without a sample fails
test_samples_cover_every_option, so a new option is covered the day it is added."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from facequant.cli.common import values
from facequant.cli.main import build_parser
from facequant.config import Option

#: What each command needs on the command line besides the option under test.
REQUIRED = {"study": ["calibration-size"], "export-precision": ["int8-pt"], "compare": ["a", "b"],
            "validate-sim": ["--reference", "r.jpg", "--captures", "c"], "models check": ["m.onnx"]}

#: Per option name: (command-line text when the option has no default, a config value). The
#: command line gives the default where there is one (the case a comparison with defaults
#: lost); the config value differs from it. Flags: the config says false, the command line sets it.
SAMPLES: dict[str, tuple[str | None, object]] = {
    "model": ("a.onnx", "b.onnx"), "data": ("photos-a", "photos-b"), "pairs": ("a.csv", "b.csv"),
    "backends": (None, "fp32"), "model-override": ("mean=127.5", {"std": 128}), "preprocessing": (None, "inferred"),
    "crop-margin": (None, 0.25), "camera": (None, "720p-60"), "distances": ("1,2", "3,4"), "face-px": ("112", "56"),
    "iod-mm": (None, 70), "blur": (None, 1.5), "noise": (None, 2), "jpeg": (None, 70), "genuine": (None, "same-photo"),
    "gallery": (None, "fp32"), "far": (None, 0.01), "threshold": ("0.3", 0.5), "multi-face": (None, "skip"),
    "protocol": (None, "identification"), "fpir": (None, 0.05), "nonmated-fraction": (None, 0.4),
    "calib-size": (None, 16), "calib-data": ("calib-a", "calib-b"), "calib-distances": ("1", "2"),
    "calib-method": ("minmax", "entropy"), "device-profile": ("a.yaml", "b.yaml"), "no-latency": (None, False),
    "out": ("runs/a", "runs/b"), "force": (None, False), "seed": (None, 7), "batch-size": (None, 16),
    "quiet": (None, False), "save-comparisons": (None, False), "executor": (None, "ray"),
    "ray-address": ("10.0.0.1:6379", "10.0.0.2:6379"), "ray-timeout": (None, 5), "no-embedding-cache": (None, False),
    "chunk-size": (None, 64), "crop-memory": ("256", 512), "reference": ("a.jpg", "b.jpg"), "captures": ("captures-a", "captures-b"),
    "results": ("runs/a", "runs/b"), "runs": (None, "elsewhere"), "diagnostics": ("diag-a", "diag-b"),
    "recipe": (None, "int8-pc"), "sizes": ("8,16", "4"), "mixes": ("0.5;1", "2"), "methods": (None, "minmax"),
    "max-probes": ("10", 20), "layer": ("Conv_1", "Conv_2"), "snr-threshold": (None, 20), "base": (None, "int8-pc"),
    "budget": (None, 3), "candidates": (None, 4), "tolerance": (None, 0.5), "target-tar": ("0.9", 0.8),
    "target-distance": ("5", 6), "no-refine": (None, False), "scenario": ("kiosk", "corridor"),
    "scenarios-dir": ("scenarios-a", "scenarios-b"), "latency-tolerance": (None, 0.2), "name-map": ("a.csv", "b.csv"),
    "latency": ("cpu", "off"), "method": (None, "both"), "ac-base": (None, "ov-int8"), "ac-metric": (None, "tar"),
    "max-drop": (None, 0.05), "ac-distance": ("4", 6), "photos": (None, 12),
}


def command_options() -> dict[str, tuple[Option, ...]]:
    """Every command built from the option table, with its options."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    commands = dict(sub.choices)
    for name, p in sub.choices.items():  # `models check` is a command of its own too
        for inner in (a for a in p._actions if isinstance(a, argparse._SubParsersAction)):
            commands.update({f"{name} {n}": q for n, q in inner.choices.items()})
    return {name: tuple(p.get_default("options")) for name, p in commands.items() if p.get_default("options")}


CASES = [(command, option) for command, opts in command_options().items() for option in opts if option.name != "config"]


def test_samples_cover_every_option():
    names = {option.name for _, option in CASES}
    assert names <= set(SAMPLES), f"options without a precedence sample: {sorted(names - set(SAMPLES))}"
    assert len(CASES) > 200  # every command, every option


def _command_line(option: Option) -> list[str]:
    """The option as given on the command line: the default's own text where it has one."""
    if option.flag:
        return [f"--{option.name}"]
    text = SAMPLES[option.name][0]
    return [f"--{option.name}", str(option.default) if text is None else text]


@pytest.mark.parametrize("command,option", CASES, ids=[f"{c}--{o.name}" for c, o in CASES])
def test_command_line_wins_over_config(command: str, option: Option, tmp_path: Path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({option.name: SAMPLES[option.name][1]}))
    base = [*command.split(), *REQUIRED.get(command, [])]
    given = _command_line(option)

    def parsed(argv: list[str]) -> object:
        return values(build_parser().parse_args(argv))[option.dest]

    from_config = parsed([*base, "--config", str(config)])
    from_command_line = parsed([*base, *given])
    assert from_config != from_command_line  # the case can fail: the two sources disagree
    assert parsed([*base, "--config", str(config), *given]) == from_command_line
    assert parsed([*base, *given, "--config", str(config)]) == from_command_line  # order on the line does not matter
    if not option.required:  # nothing given: the config applies
        assert parsed(base) != from_config or option.flag


def test_issue_case__far_and_seed_at_their_defaults_win(tmp_path: Path):
    """The reported case: far 0.01 and seed 7 in the file, --far 0.001 --seed 0 given: the run
    uses what the command line says (SweepConfig, which run.json records)."""
    from facequant.config import sweep_config

    config = tmp_path / "c.yaml"
    config.write_text("far: 0.01\nseed: 7\n")
    args = build_parser().parse_args(["sweep", "--config", str(config), "--far", "0.001", "--seed", "0",
                                      "--data", str(tmp_path)])
    sweep = sweep_config(values(args))
    assert (sweep.target_far, sweep.seed) == (0.001, 0)


def test_tui_prefill_keeps_command_line_values_equal_to_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The TUI's form: --config fills it, the command line wins, defaults included."""
    import tui.app
    from facequant.cli import main
    from tui import state

    config = tmp_path / "c.yaml"
    config.write_text(f"seed: 7\nfar: 0.01\ndata: {tmp_path}\n")
    seen: dict[str, object] = {}
    monkeypatch.setattr(tui.app, "run_tui", lambda **kwargs: seen.update(kwargs) or 0)
    assert main(["tui", "--config", str(config), "--seed", "0", "--far", "0.001"]) == 0
    prefill = seen["prefill"]
    assert prefill == {"seed": 0, "far": 0.001}, prefill  # type: ignore[comparison-overlap]
    setup = state.initial_setup(config, tmp_path / "runs", prefill)  # type: ignore[arg-type]
    assert (setup.base.seed, setup.base.target_far) == (0, 0.001)
