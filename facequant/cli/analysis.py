"""`facequant study`, `diagnose`, `search-precision` and `recommend`: the analyses built on sweeps."""

from __future__ import annotations

import argparse
from pathlib import Path

from facequant import options, ranges
from facequant.cli import common
from facequant.config import RUN, WHAT, Option, options_for, sweep_config


def register(sub: argparse._SubParsersAction) -> None:
    _register_study(sub)
    _register_diagnose(sub)
    _register_search(sub)
    _register_recommend(sub)


def _register_study(sub: argparse._SubParsersAction) -> None:
    own = (Option("recipe", "the quantized backend to study (default int8-pt)", "study", default="int8-pt",
                  type=options.text),
           Option("sizes", "calibration sizes, e.g. 16,64,256 (default: 16, 64, ... up to the photos available; "
                  "sizes above the photos available run once, as N=<photos> (all))", "study", type=options.sizes),
           Option("mixes", "calibration distance mixes, ';' between mixes, e.g. '0.5;0.5,3,6;3,6'", "study",
                  type=options.distance_mixes),
           Option("methods", "calibration methods to compare", "study", default="minmax,entropy,percentile",
                  type=options.method_list),
           Option("out", "results directory (default runs/study-<kind>-<recipe>-<time>)", RUN, type=options.out_dir))
    p = common.command(sub, "study", options_for("study", own),
                       help="calibration studies: size, distance mix, method; the distance each buys",
                       description="Run the same recipe calibrated several ways (each a full sweep against fp32) and "
                                   "tabulate close-range TAR, reliable and cliff distance per variant: study.csv, "
                                   "study.png, run.json.",
                       epilog="examples:\n  facequant study calibration-size --recipe int8-pt --sizes 16,32,61\n"
                              "  facequant study calibration-distance --recipe int8-pt --mixes '0.5;0.5,3,6'\n"
                              "  facequant study calibration-method --recipe int8-pc\n")
    p.add_argument("kind", choices=["calibration-size", "calibration-distance", "calibration-method"])
    p.set_defaults(func=cmd_study)


def _register_diagnose(sub: argparse._SubParsersAction) -> None:
    own = (Option("backends", "comma-separated static QDQ backends (int8-pt, int8-pc, a16w8, a16w16, int8-sym, "
                  "int8-npu, BASE+16bit:SEL, BASE+float:SEL); fp32 is the reference and is skipped; fp16, int8-dyn "
                  "and external backends are refused (default int8-pt,int8-pc)", WHAT,
                  default="fp32,int8-pt,int8-pc", type=options.name_list),
           Option("out", "results directory (default runs/diagnose-<model>-<time>)", RUN, type=options.out_dir),
           Option("max-probes", "diagnose a seeded subset of this many photos (default: all)", "diagnose",
                  type=options.positive_int),
           Option("layer", "layer for the activation histogram (default: the worst quantized layer at the farthest "
                  "distance)", "diagnose", type=options.text),
           Option("snr-threshold", "SNR line in dB for the summary (default 10)", "diagnose", default=10.0,
                  type=options.finite_float(-100.0, 200.0)))
    p = common.command(sub, "diagnose", options_for("diagnose", own),
                       help="layer diagnostics: per-layer SNR/PSNR, bins used, weight asymmetry by distance",
                       description="Compare every intermediate tensor of the float graph with its counterpart in "
                                   "each quantized (static QDQ) graph, on the sweep's simulated probes, at each "
                                   "distance: layers.csv, summary.csv, heartbeat / histogram / output-SNR plots, "
                                   "run.json.",
                       epilog="examples:\n  facequant diagnose --backends int8-pt,int8-pc,a16w8 --out runs/diag\n"
                              "  facequant diagnose --backends int8-pt+16bit:last3 --distances 1,4,8 --max-probes 20\n"
                              "  facequant diagnose --backends int8-pt --layer Conv_94\n")
    p.set_defaults(func=cmd_diagnose)


def _register_search(sub: argparse._SubParsersAction) -> None:
    own = (Option("base", "the INT8 recipe to improve (default int8-pt)", "search", default="int8-pt", type=options.text),
           Option("budget", "most layers promoted to 16 bit (default 6)", "search", default=6,
                  type=options.int_range(1, 1000)),
           Option("candidates", "layers confirmed by re-running (default 8)", "search", default=8,
                  type=options.positive_int),
           Option("tolerance", "reliable distance within this of fp32, metres (default 0.25)", "search", default=0.25,
                  type=options.finite_float(0.0, 100.0, low_open=True)),
           Option("target-tar", "goal instead: this TAR ...", "search", type=options.finite_float(0.0, 1.0, low_open=True)),
           Option("target-distance", "... at this distance (metres)", "search",
                  type=options.finite_float(0.0, ranges.MAX_DISTANCE_M, low_open=True)),
           Option("no-refine", "keep the distance grid as given (default: add points every --tolerance metres where "
                  "the base's and fp32's reliable distances are decided)", "search", flag=True),
           Option("method", "own (this search: layers to 16 bit), accuracy-control (NNCF's "
                  "quantize_with_accuracy_control: layers to float) or both, re-measured side by side (default own)",
                  "search", default="own", choices=("own", "accuracy-control", "both")),
           Option("ac-base", "NNCF backend accuracy control starts from and validates on: nncf-int8 (ONNX Runtime), "
                  "ov-int8 (OpenVINO) or a variant (default nncf-int8; needs the openvino extra)", "search",
                  default="nncf-int8", type=options.text),
           Option("ac-metric", "accuracy control's metric on held-out people at --ac-distance: cosine (paired genuine "
                  "cosine) or tar (default cosine)", "search", default="cosine", choices=("cosine", "tar")),
           Option("max-drop", "largest drop of that metric from the float model NNCF may leave (default 0.01)",
                  "search", default=0.01, type=options.finite_float(0.0, 1.0, low_open=True)),
           Option("ac-distance", "where accuracy control validates, metres (default: fp32's reliable distance)",
                  "search", type=options.finite_float(0.0, ranges.MAX_DISTANCE_M, low_open=True)),
           Option("out", "results directory (default runs/search-<base>-<time>)", RUN, type=options.out_dir))
    p = common.command(sub, "search-precision", options_for("search-precision", own),
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


def _register_recommend(sub: argparse._SubParsersAction) -> None:
    own = (Option("results", "results directory of a sweep (required, here or in --config)", WHAT, type=options.text),
           Option("scenario", "scenario name(s), comma-separated, or a scenario YAML path (default: every scenario)",
                  WHAT, type=options.text),
           Option("scenarios-dir", "folder of scenario YAML files (default configs/scenarios)", WHAT,
                  type=options.text),
           Option("device-profile", "device latencies (configs/devices/*.yaml) to use instead of the sweep's CPU "
                  "timing", WHAT, type=options.text),
           Option("latency-tolerance", "CPU latencies within this fraction of each other are a tie, broken by file "
                  "size (default 0.10); so are those within each other's spread across interleaved rounds", WHAT,
                  default=0.10, type=options.finite_float(0.0, 1.0)),
           Option("latency", "which latency orders the backends and checks the budget: cpu (this machine's "
                  "interleaved timing), device (the --device-profile's or the sweep's device figures), off (file "
                  "size, then 16-bit/float layers). Default: device when every backend has a device figure, else "
                  "cpu", WHAT, choices=("cpu", "device", "off")),
           Option("config", "YAML file with any of these options (keys as the long option names, '-' or '_')", WHAT,
                  type=Path))
    p = common.command(sub, "recommend", own,
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


def cmd_study(args: argparse.Namespace) -> int:
    from facequant import api
    from facequant.analysis.studies import StudyConfig
    from facequant.cli.show import show
    from facequant.render.study import render_study

    values = common.values(args)
    config = StudyConfig(str(values["kind"]), str(values["recipe"]), sweep_config({**values, "backends": "fp32"}),
                         sizes=tuple(int(n) for n in values["sizes"]) if values.get("sizes") else None,  # type: ignore[attr-defined]
                         mixes=tuple(values["mixes"]) if values.get("mixes") else None,  # type: ignore[arg-type]
                         methods=tuple(values["methods"]))  # type: ignore[arg-type]
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
    sweep = sweep_config(values)
    config = DiagnoseConfig(sweep, max_probes=values.get("max_probes"), layer=values.get("layer"),  # type: ignore[arg-type]
                            snr_threshold_db=float(values["snr_threshold"]))  # type: ignore[arg-type]
    from facequant.models.sources import results_stem

    output = common.output(values, f"diagnose-{results_stem(sweep.model)}")
    with common.progress_bar(values.get("quiet")) as progress:
        result = api.diagnose(config, output, progress)
    show(render_diagnosis(result, output.dir))
    return 0


def cmd_search_precision(args: argparse.Namespace) -> int:
    from facequant import api
    from facequant.analysis.search import SearchSettings
    from facequant.cli.show import show
    from facequant.errors import FacequantError
    from facequant.render.search import render_search

    values = common.values(args)
    config = sweep_config({**values, "backends": "fp32"})
    if (values.get("target_tar") is None) != (values.get("target_distance") is None):
        raise FacequantError("give --target-tar and --target-distance together")
    from facequant.analysis.accuracy_control import AccuracyControlSettings

    ac = (AccuracyControlSettings(str(values["ac_base"]), str(values["ac_metric"]), float(values["max_drop"]))  # type: ignore[arg-type]
          if values["method"] != "own" else None)
    search = SearchSettings(base=str(values["base"]), tolerance_m=values["tolerance"],  # type: ignore[arg-type]
                            target_tar=values.get("target_tar"), target_distance_m=values.get("target_distance"),  # type: ignore[arg-type]
                            budget=values["budget"], candidates=values["candidates"],  # type: ignore[arg-type]
                            refine=not values.get("no_refine"), method=str(values["method"]),
                            accuracy_control=ac, ac_distance_m=values.get("ac_distance"))  # type: ignore[arg-type]
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
    from facequant.errors import FacequantError

    values = common.values(args)
    if not values.get("results"):
        raise FacequantError("recommend: give --results DIR, the results directory of a sweep")
    names = [n.strip() for n in str(values.get("scenario") or "").split(",") if n.strip()]
    config = RecommendConfig(str(values["results"]), tuple(names) or None, values.get("scenarios_dir"),  # type: ignore[arg-type]
                             values.get("device_profile"), float(values["latency_tolerance"]),  # type: ignore[arg-type]
                             latency=str(values.get("latency") or "auto"))
    rec = api.recommend(config)
    written = rec.written or Path(config.results) / RECOMMEND_CSV
    said = f"written {written}" + (f" ({rec.written_note})" if rec.written_note else "")
    show([*render(rec), Text(said, style="dim", no_wrap=True)])  # a path: whole, never cut
    return 0
