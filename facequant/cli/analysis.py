"""`facequant study`, `diagnose`, `search-precision` and `recommend`: the analyses built on sweeps."""

from __future__ import annotations

import argparse
import math
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
    from facequant.analysis.studies import StudyConfig, print_study

    values = common.values(args)
    _refuse_what_the_study_ignores(str(values["kind"]), common.provided(args), args.options)
    config: StudyConfig = build(StudyConfig, {**values, "backends": "fp32"})
    output = common.output(values, f"study-{config.kind}-{config.recipe}")
    with common.progress_bar(values.get("quiet"), {config.kind: f"{config.kind}: sweeps"}) as progress:
        result = api.study(config, output, progress)
    print_study(result, output.dir)
    return 0


def cmd_diagnose(args: argparse.Namespace) -> int:
    from facequant import api
    from facequant.analysis.diagnose import report
    from facequant.analysis.diagnose.run import DiagnoseConfig

    values = common.values(args)
    config: DiagnoseConfig = build(DiagnoseConfig, values)
    output = common.output(values, f"diagnose-{Path(config.sweep.model).stem}")
    with common.progress_bar(values.get("quiet")) as progress:
        result = api.diagnose(config, output, progress)
    report.print_diagnosis(result, output.dir)
    return 0


def cmd_search_precision(args: argparse.Namespace) -> int:
    from facequant import api
    from facequant.analysis.search import SearchSettings

    values = common.values(args)
    config = sweep_config({**values, "backends": "fp32"})
    if (values.get("target_tar") is None) != (values.get("target_distance") is None):
        raise FacequantError("give --target-tar and --target-distance together")
    search: SearchSettings = build(SearchSettings, values)
    output = common.output(values, f"search-{search.base}")
    with common.progress_bar(values.get("quiet")) as progress:
        result = api.search_precision(config, search, output, progress)
    _print_search(result, search, output.dir)
    return 0


def _is_number(value: object) -> bool:
    """A finite number (cost figures are NaN or missing when not measured)."""
    return isinstance(value, int | float) and math.isfinite(value)


def _print_search(result: object, search: object, out: Path) -> None:
    from rich.console import Console

    from facequant.analysis.search import SearchResult, SearchSettings, search_summary

    assert isinstance(result, SearchResult) and isinstance(search, SearchSettings)
    summary = search_summary(result)
    console = Console()
    console.print(f"recipe: {summary['recipe']}  ({len(result.layers)} layer(s) chosen; goal "
                  f"{'met' if result.goal_met else 'not met'} in the search)")
    if "refined_distances_m" in result.run:
        console.print(f"  grid refined to {len(result.run['refined_distances_m'])} distances "  # type: ignore[arg-type]
                      f"(every {search.tolerance_m:g} m where the reliable distances are decided)")
    for backend, r in summary["remeasured"].items():  # type: ignore[union-attr]
        c = summary["cost"].get(backend, {})  # type: ignore[union-attr]
        reliable_text, cliff_text = ("beyond the sweep" if r[k] == float("inf") else f"{r[k]:.2f} m"
                                     for k in ("reliable_distance_m", "cliff_distance_m"))
        console.print(f"  {backend:40s} reliable {reliable_text}, cliff {cliff_text}, "
                      f"{c.get('layers_16bit', '-')} 16-bit layers, {c.get('file_bytes', 0) / 1e6:.2f} MB, "
                      + (f"CPU {c['latency_vs_fp32']:.2f}x fp32" if _is_number(c.get("latency_vs_fp32")) else "CPU not timed"))
    for against in (search.base, "fp32"):
        pooled = summary[f"recipe_vs_{'base' if against == search.base else 'fp32'}"]
        if pooled.get("ci95"):  # type: ignore[union-attr]
            d, (low, high) = pooled["distances_m"], pooled["ci95"]  # type: ignore[index]
            where = f"at {d[0]:g} m" if len(d) == 1 else f"over {d[0]:g}-{d[-1]:g} m"  # type: ignore[arg-type]
            console.print(f"  TAR vs {against} {where}: {pooled['tar_gain']:+.3f} "  # type: ignore[index]
                          f"(95% CI {low:+.3f} to {high:+.3f}; paired, bootstrap over identities)")
    console.print("  16-bit layers counts every layer reading a 16-bit tensor: a chosen layer's neighbours too")
    _print_side_by_side(result, console)
    console.print(f"results in {out}")


def _print_side_by_side(result: object, console: object) -> None:
    from facequant.analysis.search import SearchResult, side_by_side

    assert isinstance(result, SearchResult)
    ac = result.accuracy_control
    if ac is None:
        return
    v = ac.validation
    console.print(f"NNCF accuracy control ({ac.settings.base}, {v['metric']} at {v['distance_m']:g} m on "  # type: ignore[attr-defined]
                  f"{len(v['identities'])} held-out people, {v['pairs']} pairs, max drop {ac.settings.max_drop:g}): "  # type: ignore[arg-type]
                  f"float {ac.metric['float']:.4f}, default INT8 {ac.metric['int8_default']:.4f}, "
                  f"controlled {ac.metric['int8_accuracy_control']:.4f}; {len(ac.layers)} node(s) kept in float "
                  f"({len(ac.weighted_layers)} weighted): {', '.join(ac.layers) or 'none'}")
    for r in side_by_side(result).itertuples():
        tar = ("" if not math.isfinite(r.tar_gain_vs_base) else
               f", TAR {r.tar_gain_vs_base:+.3f} ({r.tar_gain_ci_low:+.3f} to {r.tar_gain_ci_high:+.3f})")
        console.print(f"  {r.method}: {r.layers_changed} layer(s) to {r.changed_to}, reliable "  # type: ignore[attr-defined]
                      f"{r.base_reliable_distance_m:.2f} -> {r.reliable_distance_m:.2f} m over {r.base}{tar}")


def cmd_recommend(args: argparse.Namespace) -> int:
    from rich.console import Console

    from facequant import api
    from facequant.analysis.recommend import render
    from facequant.analysis.recommend.directory import RecommendConfig
    from facequant.analysis.recommend.verdicts import RECOMMEND_CSV

    values = common.values(args)
    if not values.get("results"):
        raise FacequantError("recommend: give --results DIR, the results directory of a sweep")
    config: RecommendConfig = build(RecommendConfig, values)
    rec = api.recommend(config)
    console = Console()
    for item in render(rec):
        console.print(item)
    console.print(f"written {Path(config.results) / RECOMMEND_CSV}", style="dim")
    return 0
