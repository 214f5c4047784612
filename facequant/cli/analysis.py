"""`facequant study`, `diagnose`, `search-precision` and `recommend`: the analyses built on sweeps."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from facequant import options
from facequant.cli import common
from facequant.config import RUN, Option, options_for, positional, sweep_config
from facequant.errors import FacequantError
from facequant.params import build


def register(sub: argparse._SubParsersAction) -> None:
    _register_study(sub)
    _register_diagnose(sub)
    _register_search(sub)
    _register_recommend(sub)


def _study_options(parser: argparse.ArgumentParser) -> list[Option]:
    from facequant.analysis.studies import StudyConfig

    positional(parser, StudyConfig, "kind", "study")
    return options_for("study", StudyConfig, own=(
        Option("out", "results directory (default runs/study-<kind>-<recipe>-<time>)", RUN, type=options.out_dir),))


def _register_study(sub: argparse._SubParsersAction) -> None:
    p = common.command(sub, "study", _study_options,
                       help="calibration studies: size, distance mix, method; the distance each buys",
                       description="Run the same recipe calibrated several ways (each a full sweep against fp32) and "
                                   "tabulate close-range TAR, reliable and cliff distance per variant: study.csv, "
                                   "study.png, run.json. Each study varies one thing: an option another study varies "
                                   "(--sizes, --mixes, --methods), or the sweep option it sets per variant "
                                   "(--calib-size, --calib-distances, --calib-method), is refused.",
                       epilog="examples:\n  facequant study calibration-size --recipe int8-pt --sizes 16,32,61\n"
                              "  facequant study calibration-distance --recipe int8-pt --mixes '0.5;0.5,3,6'\n"
                              "  facequant study calibration-method --recipe int8-pc\n")
    p.set_defaults(func=cmd_study)


def _diagnose_options(parser: argparse.ArgumentParser) -> list[Option]:
    from facequant.analysis.diagnose.run import DiagnoseConfig

    return options_for("diagnose", DiagnoseConfig, own=(
        Option("out", "results directory (default runs/diagnose-<model>-<time>)", RUN, type=options.out_dir),))


def _register_diagnose(sub: argparse._SubParsersAction) -> None:
    p = common.command(sub, "diagnose", _diagnose_options,
                       help="layer diagnostics: per-layer SNR/PSNR, bins used, weight asymmetry by distance",
                       description="Compare every intermediate tensor of the float graph with its counterpart in "
                                   "each quantized (static QDQ) graph, on the sweep's simulated probes, at each "
                                   "distance: layers.csv, summary.csv, heartbeat / histogram / output-SNR plots, "
                                   "run.json.",
                       epilog="examples:\n  facequant diagnose --backends int8-pt,int8-pc,a16w8 --out runs/diag\n"
                              "  facequant diagnose --backends int8-pt+16bit:last3 --distances 1,4,8 --max-probes 20\n"
                              "  facequant diagnose --backends int8-pt --layer Conv_94\n")
    p.set_defaults(func=cmd_diagnose)


def _search_options(parser: argparse.ArgumentParser) -> list[Option]:
    from facequant.analysis.search import SearchSettings
    from facequant.sweep.config import SweepConfig

    return options_for("search-precision", SweepConfig, SearchSettings, own=(
        Option("out", "results directory (default runs/search-<base>-<time>)", RUN, type=options.out_dir),))


def _register_search(sub: argparse._SubParsersAction) -> None:
    p = common.command(sub, "search-precision", _search_options,
                       help="find the layers worth 16 bit: predicted, confirmed, greedy, re-measured",
                       description="Rank layers by the quantization damage each adds at far range (diagnose), "
                                   "confirm the top candidates by re-running them at 16 bit, promote greedily until "
                                   "the reliable distance is within --tolerance of fp32 (or --target-tar holds at "
                                   "--target-distance), then re-measure the final recipe through the sweep on another "
                                   "seed, with its cost.",
                       epilog="examples:\n  facequant search-precision --gallery fp32 --out runs/search\n"
                              "  facequant search-precision --base int8-npu --budget 4 --out runs/search-npu\n"
                              "  facequant search-precision --base int8-pt --target-tar 0.9 --target-distance 5\n")
    p.set_defaults(func=cmd_search_precision)


def _recommend_options(parser: argparse.ArgumentParser) -> list[Option]:
    from facequant.analysis.recommend.directory import RecommendConfig

    return options_for("recommend", RecommendConfig)


def _register_recommend(sub: argparse._SubParsersAction) -> None:
    p = common.command(sub, "recommend", _recommend_options,
                       help="per deployment scenario, the cheapest backend that meets it, and why others fail",
                       description="Read a results directory and, per scenario (configs/scenarios/*.yaml: camera, "
                                   "distance range, required TAR, FAR limit, latency budget), recommend the cheapest "
                                   "backend meeting it at every distance in range; say why each other one was "
                                   "rejected. Writes recommend.csv into the results directory (nothing else).",
                       epilog="examples:\n  facequant recommend --results runs/first\n"
                              "  facequant recommend --results runs/first --scenario far-field\n"
                              "  facequant recommend --results runs/first --scenario my-site.yaml "
                              "--device-profile configs/devices/hailo8-example.yaml\n")
    p.set_defaults(func=cmd_recommend)


def _refuse_what_the_study_ignores(kind: str, provided: frozenset[str], opts: Sequence[Option]) -> None:
    """A study varies one thing: the options of the other studies, and the sweep option this
    one sets per variant, would be ignored; refused by name (as argparse refuses an option
    "not allowed with" another), from the command line or a --config file alike."""
    from facequant.analysis.studies import VARIES

    by_field = {o.field: o for o in opts}
    own, varied = VARIES[kind]
    for other, (other_own, _) in VARIES.items():
        if other != kind and by_field[other_own].dest in provided:
            raise FacequantError(f"study {kind}: --{by_field[other_own].name} is for study {other}; this study "
                                 f"varies --{by_field[own].name}")
    if by_field[f"sweep.{varied}"].dest in provided:
        raise FacequantError(f"study {kind}: --{by_field[f'sweep.{varied}'].name} does not apply: the study sets it "
                             f"per variant from --{by_field[own].name}")


def cmd_study(args: argparse.Namespace) -> int:
    from facequant import api
    from facequant.analysis.studies import StudyConfig
    from facequant.cli.show import show
    from facequant.render.study import render_study

    values = common.values(args)
    _refuse_what_the_study_ignores(str(values["kind"]), common.provided(args), args.options)
    config: StudyConfig = build(StudyConfig, {**values, "backends": "fp32"})
    output = common.output(values, f"study-{config.kind}-{config.recipe}")
    with common.progress_bar(values.get("quiet"), {config.kind: f"{config.kind}: sweeps"}) as progress:
        result = api.study(config, output, progress)
    show(render_study(result, output.dir))
    return 0


def cmd_diagnose(args: argparse.Namespace) -> int:
    from facequant import api
    from facequant.analysis.diagnose.run import DiagnoseConfig
    from facequant.cli.show import show
    from facequant.render.diagnosis import render_diagnosis

    values = common.values(args)
    config: DiagnoseConfig = build(DiagnoseConfig, values)
    from facequant.models.sources import results_stem

    output = common.output(values, f"diagnose-{results_stem(config.sweep.model)}")
    with common.progress_bar(values.get("quiet")) as progress:
        result = api.diagnose(config, output, progress)
    show(render_diagnosis(result, output.dir))
    return 0


def cmd_search_precision(args: argparse.Namespace) -> int:
    from facequant import api
    from facequant.analysis.search import SearchSettings
    from facequant.cli.show import show
    from facequant.render.search import render_search

    values = common.values(args)
    config = sweep_config({**values, "backends": "fp32"})
    if (values.get("target_tar") is None) != (values.get("target_distance") is None):
        raise FacequantError("give --target-tar and --target-distance together")
    search: SearchSettings = build(SearchSettings, values)
    output = common.output(values, f"search-{search.base}")
    with common.progress_bar(values.get("quiet")) as progress:
        result = api.search_precision(config, search, output, progress)
    show(render_search(result, output.dir))
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    from rich.text import Text

    from facequant import api
    from facequant.analysis.recommend import render
    from facequant.analysis.recommend.directory import RecommendConfig
    from facequant.analysis.recommend.verdicts import RECOMMEND_CSV
    from facequant.cli.show import show

    values = common.values(args)
    if not values.get("results"):
        raise FacequantError("recommend: give --results DIR, the results directory of a sweep")
    config: RecommendConfig = build(RecommendConfig, values)
    rec = api.recommend(config)
    written = rec.written or Path(config.results) / RECOMMEND_CSV
    said = f"written {written}" + (f" ({rec.written_note})" if rec.written_note else "")
    show([*render(rec), Text(said, style="dim", no_wrap=True)])  # a path: whole, never cut
    return 0
