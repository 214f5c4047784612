"""facequant's command line: `facequant sweep`, `facequant models ...`, `facequant validate-sim`."""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import yaml

from facequant import __version__, options, ranges, settings
from facequant.errors import FacequantError
from facequant.names import ESCAPE, display

#: Set to 1 to see the traceback of an internal error instead of its one-line summary.
DEBUG_ENV = "FACEQUANT_DEBUG"

EPILOG = """examples:
  facequant sweep                                   # shared model + celebs13, fp32 vs int8-pt vs int8-pc
  facequant sweep --backends fp32,int8-pt,int8-pc,a16w8 --camera 720p-60 --out runs/kiosk
  facequant sweep --face-px 160,112,80,64,48,40,32,24 --genuine same-photo
  facequant models inspect ../shared/models/faceplugin-fr/fr_feature.onnx
  facequant validate-sim --reference photo_hi.jpg --captures captures/
"""


def _add_sweep_args(p: argparse.ArgumentParser) -> None:
    from facequant.backends.registry import NAME_HELP, available_backends
    from facequant.simulate.camera import load_cameras

    g = p.add_argument_group("what to evaluate")
    g.add_argument("--model", default=None, type=options.text, help="ONNX embedding model path, 'faceplugin', or an insightface pack "
                   "(buffalo_l, buffalo_s, antelopev2). Default: the faceplugin model in the shared folder.")
    g.add_argument("--data", default=None, type=options.text, help="folder of identity folders (person/photo.jpg), or 'lfw'. "
                   "Default: celebs13 in the shared folder.")
    g.add_argument("--pairs", default=None, type=options.text, help="pairs CSV (image_a,image_b,same_identity) to compare instead of every photo pair")
    g.add_argument("--backends", default="fp32,int8-pt,int8-pc", type=options.name_list,
                   help=f"comma-separated, from: {', '.join(available_backends())} (fp32 is always added as the "
                        f"reference). {NAME_HELP}")
    g.add_argument("--config", type=Path, help="YAML file with any of these options (keys as the long option names, '-' or '_')")
    g.add_argument("--model-override", action="append", default=[], metavar="KEY=VALUE", type=options.model_override,
                   help="override the inferred model spec, e.g. mean=127.5 std=127.5 channel_order=BGR, or per channel "
                        "mean=103.939,116.779,123.68 std=1,1,1 (in the model's channel order); a preprocessing set here "
                        "is checked on data and kept, with a warning when it scores clearly worse than the best")
    # Issue 12: preprocessing checked on data, and looser crops (facequant.models.preprocessing).
    from facequant.models.preprocessing import preprocessing_choices

    g.add_argument("--preprocessing", default="auto", type=options.preprocessing, metavar="NAME",
                   help="auto (default): score candidate preprocessings on close-range pairs and use the best "
                        "(the graph's own spec unless one clearly beats it); or one of "
                        f"{', '.join(preprocessing_choices()[1:])} (see facequant models check)")
    g.add_argument("--crop-margin", type=options.crop_margin, default=0.0, metavar="FRACTION",
                   help="extra border around the aligned face, a fraction of it in [0, 1], for models trained on "
                        "looser crops (default 0: the ArcFace template's crop)")

    g = p.add_argument_group("distance simulation")
    g.add_argument("--camera", default="1080p-90", type=options.camera, help=f"preset ({', '.join(load_cameras())}) or WIDTHxHFOV, e.g. 1920x90")
    g.add_argument("--distances", default=None, type=options.distances, help="metres, '0.5,1,2' or 'START:STOP:N' (geometric). Default: 0.5 to 12 m, 12 steps")
    g.add_argument("--face-px", default=None, type=options.face_px, help="sweep in face pixels instead of metres, e.g. 160,112,80,56,40,28")
    g.add_argument("--iod-mm", type=options.iod_mm, default=63.0,
                   help=f"physical inter-ocular distance, {ranges.IOD_RANGE} mm (default 63 mm)")
    g.add_argument("--blur", type=options.blur_sigma, default=0.0, help="optics blur sigma in camera pixels (default off)")
    g.add_argument("--noise", type=options.noise_sigma, default=0.0, help="sensor noise sigma in 8-bit levels (default off)")
    g.add_argument("--jpeg", type=options.jpeg_quality, default=0,
                   help="JPEG quality 1-100 applied at camera resolution (default 0: off)")

    g = p.add_argument_group("matching protocol")
    g.add_argument("--genuine", choices=["different-photo", "same-photo"], default="different-photo",
                   help="genuine pairs: two photos of a person (default), or a photo against its own enrolment")
    g.add_argument("--gallery", choices=["same-backend", "fp32"], default="same-backend",
                   help="backend that enrols the close-range gallery (default: the backend under test)")
    g.add_argument("--far", type=options.probability, default=1e-3, help="target FAR that sets the threshold on fp32 close-range impostors")
    g.add_argument("--threshold", type=options.cosine, default=None, help="fixed cosine threshold in [-1, 1] (overrides --far)")
    g.add_argument("--multi-face", choices=["primary", "skip"], default="primary",
                   help="photos with several faces: use the most confident face (default) or skip the photo")
    g.add_argument("--protocol", choices=["verification", "identification"], default="verification",
                   help="what the cliff, the recommendation and the TUI read: 1:1 verification (TAR at --far, "
                        "default) or 1:N identification (TPIR at --fpir); both are measured in every run "
                        "(sweep.csv, identification.csv)")
    g.add_argument("--fpir", type=options.probability, default=1e-2,
                   help="identification: target false-positive identification rate that sets its threshold on fp32 "
                        "close-range non-mated probes (default 0.01)")
    g.add_argument("--nonmated-fraction", type=options.probability, default=0.2,
                   help="identification: share of the people left out of the gallery, whose photos must be rejected "
                        "(seeded; default 0.2)")

    g = p.add_argument_group("quantization")
    g.add_argument("--calib-size", type=options.positive_int, default=32, help="calibration photos, a seeded subset at close range (default 32)")
    g.add_argument("--calib-data", default=None, type=options.text,
                   help="folder of photos to calibrate on (default: the evaluation photos)")
    g.add_argument("--calib-distances", default=None, type=options.distances,
                   help="metres to calibrate at, e.g. '0.5,3,6' (distance-aware calibration; default: the closest only)")
    g.add_argument("--calib-method", choices=["minmax", "entropy", "percentile"], default=None,
                   help="calibration method for every quantized backend (default: minmax)")

    g.add_argument("--device-profile", default=None, type=options.text,
                   help="YAML with a device's measured latency per backend (see configs/devices/); default: CPU timing only")
    g.add_argument("--no-latency", action="store_true", help="skip timing each backend at batch 1 after the sweep")

    g = p.add_argument_group("run")
    g.add_argument("--out", type=options.out_dir, default=None, help="results directory (default runs/<model>-<time>)")
    g.add_argument("--force", action="store_true",
                   help="replace an existing results directory, only one facequant wrote (its .facequant.json lists "
                        "every file in it)")
    g.add_argument("--seed", type=options.seed, default=0, help="seed for subsets, noise and calibration (default 0)")
    g.add_argument("--batch-size", type=options.positive_int, default=64, help="inference batch size (default 64)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")

    g = p.add_argument_group("scale")
    g.add_argument("--save-comparisons", action="store_true",
                   help="also write every comparison as rows, comparisons.parquet (N^2 rows: large; default: "
                        "genuine comparisons only, genuine.parquet, and impostors as counts)")
    g.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="where embeddings are computed: this process (default) or a Ray cluster "
                        "(pip install -e '.[ray]'); the numbers are the same")
    g.add_argument("--ray-address", default=None, type=options.text,
                   help="Ray cluster to join, e.g. 10.0.0.5:6379 or 'auto' (default: start a local Ray instance)")
    g.add_argument("--no-embedding-cache", action="store_true",
                   help="compute every embedding afresh (default: reuse the ones cached for the same model, recipe "
                        "and probe crop)")
    g.add_argument("--chunk-size", type=options.positive_int, default=256,
                   help="photos whose crops are held in memory at once (default 256)")


def _config_from_args(args: argparse.Namespace) -> tuple[object, Path]:
    from facequant.backends.registry import parse_backends
    from facequant.evaluate.config import SweepConfig
    from facequant.simulate.camera import DEFAULT_DISTANCES_M, Degradation

    if args.config:
        for attr, value in _read_config(Path(args.config), _OPTIONS.get(args.command, {})).items():
            if getattr(args, attr) == _DEFAULTS.get(attr):  # the command line wins over the file
                setattr(args, attr, value)
    model = args.model or "faceplugin"
    data = args.data or str(settings.default_dataset_path())
    if not args.data and not Path(data).is_dir():
        raise FacequantError(f"{data}: no default photos here (set {settings.SHARED_ENV}); pass --data DIR or --data lfw")
    config = SweepConfig(
        model=model, data=data, backends=tuple(parse_backends(str(args.backends))), camera=str(args.camera),
        distances_m=args.distances or DEFAULT_DISTANCES_M, face_px=args.face_px,
        iod_mm=float(args.iod_mm), degradation=Degradation(float(args.blur), float(args.noise), int(args.jpeg)),
        genuine_mode=args.genuine, gallery=args.gallery, pairs=args.pairs, target_far=float(args.far),
        threshold=args.threshold, calibration_size=int(args.calib_size), calibration_method=args.calib_method,
        calibration_data=args.calib_data, device_profile=args.device_profile, measure_cost=not args.no_latency,
        calibration_distances_m=args.calib_distances or None, multi_face=args.multi_face, seed=int(args.seed),
        batch_size=int(args.batch_size), model_overrides=dict(args.model_override), protocol=args.protocol,
        target_fpir=float(args.fpir), nonmated_fraction=float(args.nonmated_fraction),
        save_comparisons=bool(args.save_comparisons), executor=args.executor, ray_address=args.ray_address,
        embedding_cache=not args.no_embedding_cache, chunk_size=int(args.chunk_size),
        preprocessing=str(args.preprocessing), crop_margin=float(args.crop_margin))
    out = args.out or Path("runs") / f"{Path(model).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    return config, Path(out)


def _read_config(path: Path, actions: dict[str, argparse.Action]) -> dict[str, object]:
    """A --config YAML as {dest: value}, every value converted and checked as on the command
    line; a one-line FacequantError naming the file and the key otherwise."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise FacequantError(f"{path}: cannot read config: not valid YAML{where} ({problem})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise FacequantError(f"{path}: cannot read config ({getattr(exc, 'strerror', None) or exc})") from exc
    if raw is None:
        raise FacequantError(f"{path}: config is empty (expected a mapping of option: value)")
    if not isinstance(raw, dict):
        raise FacequantError(f"{path}: config must be a mapping of option: value, got a {type(raw).__name__}")
    values: dict[str, object] = {}
    for key, value in raw.items():
        attr = str(key).replace("-", "_")
        action = actions.get(attr)
        if action is None or attr in ("config", "help"):
            raise FacequantError(f"{path}: unknown option '{key}'")
        values[attr] = _config_value(path, str(key), action, value)
    return values


def _config_value(path: Path, key: str, action: argparse.Action, value: object) -> object:
    """One config value through the option's own converter (flags must be YAML booleans)."""
    def bad(why: str) -> FacequantError:
        return FacequantError(f"{path}: {key}: {why}")

    if action.nargs == 0:  # a flag such as --quiet: 'no' in quotes is a string, and true
        if not isinstance(value, bool):
            raise bad(f"must be true or false (an unquoted YAML boolean), got {value!r}")
        return value
    if value is None or value == "" or isinstance(value, bool):
        raise bad(f"expected a value for --{key.replace('_', '-')}, got {value!r}")
    if isinstance(action, argparse._AppendAction):  # --model-override: a mapping, or KEY=VALUE items
        try:
            if isinstance(value, dict):
                return [options.model_override_item(str(k), v) for k, v in value.items()]
            return [action.type(str(item)) for item in (value if isinstance(value, list) else [value])]  # type: ignore[misc]
        except argparse.ArgumentTypeError as exc:
            raise bad(str(exc)) from None
    text = _config_text(value)
    if text is None:
        raise bad(f"expected text or a number, got a {type(value).__name__}")
    if action.choices is not None and text not in action.choices:
        raise bad(f"must be one of {', '.join(map(str, action.choices))}, got {value!r}")
    if action.type is None:
        return text
    try:
        return action.type(text)  # type: ignore[operator]
    except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
        raise bad(str(exc)) from None


def _config_text(value: object) -> str | None:
    """A YAML scalar or list as the text the command line would carry: lists joined by ',',
    lists of lists by ';' (study --mixes); None for anything else (a mapping, a boolean)."""
    def scalar(v: object) -> str | None:
        return str(v) if isinstance(v, str | int | float) and not isinstance(v, bool) else None

    if not isinstance(value, list):
        return scalar(value)
    if not value:
        return None
    if any(isinstance(v, list) for v in value):
        mixes = [[scalar(x) for x in (v if isinstance(v, list) else [v])] for v in value]
        return None if any(x is None for m in mixes for x in m) else ";".join(",".join(m) for m in mixes)  # type: ignore[arg-type]
    items = [scalar(v) for v in value]
    return None if None in items else ",".join(items)  # type: ignore[arg-type]


_DEFAULTS: dict[str, object] = {}
#: Each command's options by dest: what a --config file may set, with the converter to use.
_OPTIONS: dict[str, dict[str, argparse.Action]] = {}

#: Options naming files or folders a command reads: a results folder holding one is never replaced.
_INPUT_OPTIONS = ("model", "data", "pairs", "calib_data", "config", "device_profile", "name_map", "reference",
                  "captures", "results", "scenarios_dir", "diagnostics")


def _inputs(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(option, path) of every input the command reads, defaults included."""
    from facequant.models.spec import INSIGHTFACE_PACKS
    from facequant.results.output import backend_inputs

    found = [(f"--{dest.replace('_', '-')}", str(getattr(args, dest))) for dest in _INPUT_OPTIONS
             if getattr(args, dest, None) and Path(str(getattr(args, dest))).expanduser().exists()]
    model = str(getattr(args, "model", None) or "faceplugin")
    if model == "faceplugin":
        found.append(("--model", str(settings.default_model_path())))
    elif model in INSIGHTFACE_PACKS:
        found.append(("--model", str(Path("~/.insightface/models").expanduser() / model)))
    if hasattr(args, "data") and not args.data:
        found.append(("--data", str(settings.default_dataset_path())))
    for option in ("backends", "recipe", "base"):
        found += backend_inputs(str(getattr(args, option, "") or ""))
    return found


def _check_out(out: Path, args: argparse.Namespace) -> None:
    """The output folder checked before any work: never compute what cannot be saved."""
    from facequant.results.output import check_output_dir

    check_output_dir(out, bool(args.force), _inputs(args))


def cmd_sweep(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from facequant.evaluate.engine import run_sweep
    from facequant.results.directory import print_summary, write_results

    config, out = _config_from_args(args)
    _check_out(out, args)
    labels = {"faces": "detecting and aligning faces", "calibration": "building backends", "distances": "sweeping distances"}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  disable=args.quiet, transient=False) as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(labels.get(stage, stage), total=total)
            bar.update(tasks[stage], completed=done)

        result = run_sweep(config, progress=progress)  # type: ignore[arg-type]
    write_results(result, out, force=args.force)
    print_summary(result, out)
    return 0


def _check_calibrated(recipe: str) -> None:
    """A calibration study varies calibration: fp32, fp16, dynamic and external have none."""
    from facequant.backends.base import EXTERNAL_PREFIX, FLOAT_BACKENDS
    from facequant.backends.quantize import RECIPES, split_recipe_name

    if (recipe in FLOAT_BACKENDS or recipe.startswith(EXTERNAL_PREFIX)
            or not RECIPES[split_recipe_name(recipe)[0]].needs_calibration):
        raise FacequantError(f"--recipe {recipe}: not calibrated, nothing to study; give a static recipe "
                             "(int8-pt, int8-pc, a16w8, ..., BASE+16bit:SEL)")


def cmd_study(args: argparse.Namespace) -> int:
    from facequant.analysis import studies
    from facequant.backends.registry import parse_backends

    args.backends = "fp32"  # each variant sweeps fp32 and the recipe
    base, _ = _config_from_args(args)
    parse_backends(args.recipe)  # a clear error for an unknown recipe before any work
    _check_calibrated(args.recipe)
    out = args.out or Path("runs") / f"study-{args.kind}-{args.recipe}-{time.strftime('%Y%m%d-%H%M%S')}"
    _check_out(out, args)
    if args.kind == "calibration-size":
        variants = studies.size_variants(base, [int(n) for n in args.sizes] if args.sizes else None)
    elif args.kind == "calibration-distance":
        variants = studies.distance_variants(base, list(args.mixes) if args.mixes else None)
    else:
        variants = studies.method_variants(base, list(args.methods))
    from rich.progress import Progress

    with Progress(disable=args.quiet) as bar:
        task = bar.add_task(f"{args.kind}: {len(variants)} sweeps", total=len(variants))
        result = studies.run_study(args.kind, base, args.recipe, variants,
                                   progress=lambda _s, done, _t: bar.update(task, completed=done))
    studies.write_study(result, out, force=args.force, inputs=_inputs(args))
    studies.print_study(result, out)
    return 0


def cmd_export_precision(args: argparse.Namespace) -> int:
    from facequant.evaluate.probes import prepare_probes
    from facequant.results.precision_export import export_precision, load_name_map

    args.backends = "fp32"
    config, _ = _config_from_args(args)
    if args.out is None:
        raise FacequantError("export-precision: give --out DIR")
    out = Path(args.out)
    _check_out(out, args)
    name_map = load_name_map(args.name_map) if args.name_map else None
    ps = prepare_probes(config)
    result = export_precision(args.recipe, ps.normalized, ps.spec.input_name, ps.calibration_tensors(), out, name_map,
                              force=args.force, inputs=_inputs(args))
    for warning in result["warnings"]:
        print(f"facequant: warning: {warning}", file=sys.stderr)
    for key in ("ort", "precision", "hailo"):
        print(result[key])
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    from rich.console import Console

    from facequant.analysis.recommend import RECOMMEND_CSV, recommend_dir, render

    names = [n.strip() for n in str(args.scenario).split(",") if n.strip()] if args.scenario else None
    rec = recommend_dir(args.results, names, scenarios_directory=args.scenarios_dir,
                        device_profile=args.device_profile, latency_tolerance=args.latency_tolerance)
    console = Console()
    for item in render(rec):
        console.print(item)
    console.print(f"written {Path(args.results) / RECOMMEND_CSV}", style="dim")
    return 0


def cmd_diagnose(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from facequant.analysis.diagnose import report as diagnose_report
    from facequant.analysis.diagnose import run as diagnostics

    if args.out is None:  # a diagnosis is not a sweep: its own default folder name
        args.out = Path("runs") / f"diagnose-{Path(args.model or 'faceplugin').stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    sweep, out = _config_from_args(args)
    diagnostics.diagnose_backends(sweep.backends)  # type: ignore[attr-defined]  # refuse fp16, dynamic, external before any work
    _check_out(out, args)
    config = diagnostics.DiagnoseConfig(sweep, max_probes=args.max_probes, layer=args.layer,  # type: ignore[arg-type]
                                        snr_threshold_db=float(args.snr_threshold))
    labels = {"faces": "detecting and aligning faces", "calibration": "building backends",
              "diagnose": "comparing tensors (distance x batch)"}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  disable=args.quiet, transient=False) as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(labels.get(stage, stage), total=total)
            bar.update(tasks[stage], completed=done)

        result = diagnostics.run_diagnose(config, progress=progress)
    diagnose_report.write_diagnosis(result, out, force=args.force)
    diagnose_report.print_diagnosis(result, out)
    return 0


def _is_number(value: object) -> bool:
    """A finite number (cost figures are NaN or missing when not measured)."""
    return isinstance(value, int | float) and math.isfinite(value)


def cmd_search_precision(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress

    from facequant.analysis.search import (
        SearchSettings,
        search_precision,
        search_summary,
        write_search,
    )

    args.backends = "fp32"
    config, _ = _config_from_args(args)
    if (args.target_tar is None) != (args.target_distance is None):
        raise FacequantError("give --target-tar and --target-distance together")
    out = Path(args.out or Path("runs") / f"search-{args.base}-{time.strftime('%Y%m%d-%H%M%S')}")
    _check_out(out, args)
    settings = SearchSettings(base=args.base, tolerance_m=args.tolerance, target_tar=args.target_tar,
                              target_distance_m=args.target_distance, budget=args.budget, candidates=args.candidates,
                              refine=not args.no_refine)
    with Progress(disable=args.quiet) as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done)

        result = search_precision(config, settings, progress=progress)
    write_search(result, out, force=args.force)
    summary = search_summary(result)
    console = Console()
    console.print(f"recipe: {summary['recipe']}  ({len(result.layers)} layer(s) chosen; goal "
                  f"{'met' if result.goal_met else 'not met'} in the search)")
    if "refined_distances_m" in result.run:
        console.print(f"  grid refined to {len(result.run['refined_distances_m'])} distances "  # type: ignore[arg-type]
                      f"(every {settings.tolerance_m:g} m where the reliable distances are decided)")
    for backend, r in summary["remeasured"].items():  # type: ignore[union-attr]
        c = summary["cost"].get(backend, {})  # type: ignore[union-attr]
        cliff_at = r["cliff_distance_m"]
        cliff_text = "beyond the sweep" if cliff_at == float("inf") else f"{cliff_at:.2f} m"
        console.print(f"  {backend:40s} reliable {r['reliable_distance_m']:.2f} m, cliff {cliff_text}, "
                      f"{c.get('layers_16bit', '-')} 16-bit layers, {c.get('file_bytes', 0) / 1e6:.2f} MB, "
                      + (f"CPU {c['latency_vs_fp32']:.2f}x fp32" if _is_number(c.get("latency_vs_fp32")) else "CPU not timed"))
    for against in (args.base, "fp32"):
        pooled = summary[f"recipe_vs_{'base' if against == args.base else 'fp32'}"]
        if pooled.get("ci95"):  # type: ignore[union-attr]
            d, (low, high) = pooled["distances_m"], pooled["ci95"]  # type: ignore[index]
            where = f"at {d[0]:g} m" if len(d) == 1 else f"over {d[0]:g}-{d[-1]:g} m"  # type: ignore[arg-type]
            console.print(f"  TAR vs {against} {where}: {pooled['tar_gain']:+.3f} "  # type: ignore[index]
                          f"(95% CI {low:+.3f} to {high:+.3f}; paired, bootstrap over identities)")
    console.print("  16-bit layers counts every layer reading a 16-bit tensor: a chosen layer's neighbours too")
    console.print(f"results in {out}")
    return 0


def cmd_models_inspect(args: argparse.Namespace) -> int:
    from facequant.models.spec import describe, inspect_model, resolve_model

    print(describe(inspect_model(resolve_model(args.model))))
    return 0


def cmd_models_check(args: argparse.Namespace) -> int:
    from facequant.models.check import print_check, run_check

    print_check(run_check(args.model, args.data or str(settings.default_dataset_path()), args.preprocessing,
                          dict(args.model_override), args.crop_margin, args.seed, args.photos))
    return 0


def cmd_models_pull(args: argparse.Namespace) -> int:
    from facequant.models.spec import faceplugin_cache, pull_faceplugin, resolve_model

    if args.name == "faceplugin":
        dest = Path(args.dest) if args.dest else faceplugin_cache()
        path = pull_faceplugin(dest)
    else:
        path = resolve_model(args.name)
    print(path)
    return 0


def cmd_cameras(args: argparse.Namespace) -> int:
    from facequant.simulate.camera import load_cameras

    for name, cam in load_cameras().items():
        at = ", ".join(f"{d:g} m: {cam.face_px(d):.0f} px" for d in (0.5, 1, 3, 5, 10))
        print(f"{name:10s} {cam.description}\n{'':10s} focal {cam.focal:.0f} px; aligned face {at}")
    return 0


def cmd_export_probes(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from facequant.evaluate.probes import prepare_probes
    from facequant.results.probe_export import export_probes

    config, out = _config_from_args(args)
    _check_out(out, args)
    labels = {"faces": "detecting and aligning faces", "export": "writing tensors and crops"}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  disable=args.quiet, transient=False) as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(labels.get(stage, stage), total=total)
            bar.update(tasks[stage], completed=done)

        summary = export_probes(prepare_probes(config, progress), out, args.force, progress)  # type: ignore[arg-type]
    print(summary.line())
    return 0


def cmd_validate_sim(args: argparse.Namespace) -> int:
    from facequant.analysis.fidelity import print_fidelity, validate_simulation, write_fidelity
    from facequant.simulate.camera import Degradation

    out = Path(args.out or Path("runs") / f"validate-{time.strftime('%Y%m%d-%H%M%S')}")
    _check_out(out, args)
    degradation = Degradation(args.blur, args.noise, args.jpeg)
    table = validate_simulation(args.model or "faceplugin", Path(args.reference),
                                Path(args.captures), backends=str(args.backends), seed=args.seed,
                                degradation=degradation)
    config = {"model": args.model or "faceplugin", "reference": args.reference, "captures": args.captures,
              "backends": str(args.backends), "degradation": degradation.to_dict(), "seed": args.seed}
    written = write_fidelity(table, out, config, force=args.force, inputs=_inputs(args))
    print_fidelity(table, written)
    return 0


def cmd_tui(args: argparse.Namespace) -> int:
    try:  # Textual loads only for the TUI: the other commands stay as quick to start as before
        from tui.app import run_tui
    except ModuleNotFoundError as exc:
        if exc.name not in ("tui", "textual", "textual_plotext"):
            raise
        raise FacequantError(f"the TUI needs {exc.name}: pip install -e . (it is a dependency)") from exc
    return run_tui(results=args.results, config=args.config, runs_dir=args.runs, diagnostics=args.diagnostics)


def _command(sub: argparse._SubParsersAction, name: str, **kwargs: object) -> argparse.ArgumentParser:
    """A subcommand whose description and examples keep their own line breaks."""
    return sub.add_parser(name, formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)  # type: ignore[arg-type]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="facequant", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="How far from the camera does each face-embedding backend (float, INT8, 16-bit) still match? "
                    "facequant simulates distance through a camera model, runs the backends side by side, and "
                    "reports TAR, FAR, embedding pre-norm and the quantization cliff.")
    parser.add_argument("--version", action="version", version=f"facequant {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = _command(sub, "sweep", help="distance sweep: sweep.csv, cliff.csv, plots, run.json", epilog=EPILOG,
                 description="Simulate each photo at each distance, embed it with every backend, and report "
                             "TAR/FAR at one threshold (set on fp32 close-range impostors at --far), pre-norm "
                             "statistics, and per backend the reliable distance and the cliff.")
    _add_sweep_args(p)
    p.set_defaults(func=cmd_sweep)

    models = sub.add_parser("models", help="inspect or obtain embedding models")
    msub = models.add_subparsers(dest="models_command", required=True)
    p = msub.add_parser("inspect", help="print the inferred spec of a model (input, size, mean/std, opset, batch)")
    p.add_argument("model", help="ONNX path, 'faceplugin' or an insightface pack name")
    p.set_defaults(func=cmd_models_inspect)
    p = msub.add_parser("check", help="score candidate preprocessings of a model on photos (verification AUC) and "
                        "show what its graph does at both ends",
                        description="Embed close-range aligned crops of a seeded, identity-stratified subset of DIR "
                                    "under each candidate preprocessing (RGB/BGR x raw, x/255, (x-127.5)/127.5, "
                                    "(x-127.5)/128, Caffe means, ImageNet mean/std, and the spec inferred from the "
                                    "graph), score each by verification AUC on genuine vs impostor pairs, and say "
                                    "which one a sweep would use. Also reports in-graph input normalization and an "
                                    "output L2 normalization (cut off so that the pre-norm is measured).")
    p.add_argument("model", type=options.text, help="ONNX path, 'faceplugin' or an insightface pack name")
    p.add_argument("--data", default=None, type=options.text,
                   help="folder of identity folders (default: celebs13 in the shared folder)")
    p.add_argument("--preprocessing", default="auto", type=options.preprocessing, metavar="NAME",
                   help="as facequant sweep: auto, inferred or a candidate name")
    p.add_argument("--model-override", action="append", default=[], metavar="KEY=VALUE", type=options.model_override,
                   help="as facequant sweep, e.g. mean=103.939,116.779,123.68 std=1 channel_order=BGR")
    p.add_argument("--crop-margin", type=options.crop_margin, default=0.0, metavar="FRACTION",
                   help="extra border around the aligned face (default 0)")
    p.add_argument("--seed", type=options.seed, default=0, help="seed of the photo subset (default 0)")
    p.add_argument("--photos", type=options.positive_int, default=None,
                   help="photos to score on (default: as a sweep, 32, identity-stratified)")
    p.set_defaults(func=cmd_models_check)
    p = msub.add_parser("pull", help="fetch a model: 'faceplugin' via npm pack (sha256-verified), or an insightface pack")
    p.add_argument("name", help="faceplugin, buffalo_l, buffalo_s or antelopev2")
    p.add_argument("--dest", help="folder for faceplugin (default: the cache)")
    p.set_defaults(func=cmd_models_pull)

    p = _command(sub, "study", help="calibration studies: size, distance mix, method; the distance each buys",
                 description="Run the same recipe calibrated several ways (each a full sweep against fp32) and "
                             "tabulate close-range TAR, reliable and cliff distance per variant: study.csv, "
                             "study.png, run.json.",
                 epilog="examples:\n  facequant study calibration-size --recipe int8-pt --sizes 16,32,61\n"
                        "  facequant study calibration-distance --recipe int8-pt --mixes '0.5;0.5,3,6'\n"
                        "  facequant study calibration-method --recipe int8-pc\n")
    p.add_argument("kind", choices=["calibration-size", "calibration-distance", "calibration-method"])
    p.add_argument("--recipe", default="int8-pt", type=options.text, help="the quantized backend to study (default int8-pt)")
    p.add_argument("--sizes", default=None, type=options.sizes, help="calibration sizes, e.g. 16,64,256 (default: 16, 64, ... up to the photos available)")
    p.add_argument("--mixes", default=None, type=options.distance_mixes, help="calibration distance mixes, ';' between mixes, e.g. '0.5;0.5,3,6;3,6'")
    p.add_argument("--methods", default="minmax,entropy,percentile", type=options.method_list, help="calibration methods to compare")
    _add_sweep_args(p)
    p.set_defaults(func=cmd_study)

    p = _command(sub, "export-precision", help="export a mixed-precision recipe: ORT JSON, per-layer JSON, Hailo .alls",
                 description="Write the recipe as ORT quantize_static options (TensorQuantOverrides; reloads into "
                             "the same model), a per-layer precision JSON for other toolchains, and Hailo "
                             "model-script lines `quantization_param(<layer>, precision_mode=a16_w16)`.",
                 epilog="example:\n  facequant export-precision int8-pt+16bit:last3 --name-map names.csv --out exports/\n"
                        "names.csv: onnx,hailo rows (Hailo renames layers; unmapped ones are warned about)")
    p.add_argument("recipe", help="a static recipe, e.g. int8-pt+16bit:last3 or int8-pc+16bit:nodes=Conv_91;Conv_94")
    p.add_argument("--name-map", type=Path, default=None, help="ONNX node -> compiler layer names (YAML/JSON mapping or CSV onnx,hailo)")
    _add_sweep_args(p)
    p.set_defaults(func=cmd_export_precision)

    p = _command(sub, "recommend", help="per deployment scenario, the cheapest backend that meets it, and why others fail",
                 description="Read a results directory and, per scenario (configs/scenarios/*.yaml: camera, "
                             "distance range, required TAR, FAR limit, latency budget), recommend the cheapest "
                             "backend meeting it at every distance in range; say why each other one was "
                             "rejected. Writes recommend.csv into the results directory (nothing else).",
                 epilog="examples:\n  facequant recommend --results runs/first\n"
                        "  facequant recommend --results runs/first --scenario far-field\n"
                        "  facequant recommend --results runs/first --scenario my-site.yaml "
                        "--device-profile configs/devices/hailo8-example.yaml\n")
    p.add_argument("--results", required=True, type=options.text, help="results directory of a sweep")
    p.add_argument("--scenario", default=None, type=options.text,
                   help="scenario name(s), comma-separated, or a scenario YAML path (default: every scenario)")
    p.add_argument("--scenarios-dir", default=None, type=options.text, help="folder of scenario YAML files (default configs/scenarios)")
    p.add_argument("--device-profile", default=None, type=options.text,
                   help="device latencies (configs/devices/*.yaml) to use instead of the sweep's CPU timing")
    p.add_argument("--latency-tolerance", type=options.finite_float(0.0, 1.0), default=0.10,
                   help="CPU latencies within this fraction of each other are a tie, broken by file size (default 0.10)")
    p.set_defaults(func=cmd_recommend)

    p = _command(sub, "diagnose", help="layer diagnostics: per-layer SNR/PSNR, bins used, weight asymmetry by distance",
                 description="Compare every intermediate tensor of the float graph with its counterpart in each "
                             "quantized (static QDQ) graph, on the sweep's simulated probes, at each distance: "
                             "layers.csv, summary.csv, heartbeat / histogram / output-SNR plots, run.json.",
                 epilog="examples:\n  facequant diagnose --backends int8-pt,int8-pc,a16w8 --out runs/diag\n"
                        "  facequant diagnose --backends int8-pt+16bit:last3 --distances 1,4,8 --max-probes 20\n"
                        "  facequant diagnose --backends int8-pt --layer Conv_94\n")
    _add_sweep_args(p)
    for action in p._actions:  # the sweep's matching and cost options mean nothing here
        if action.dest in ("pairs", "genuine", "gallery", "far", "threshold", "device_profile", "no_latency"):
            action.help = argparse.SUPPRESS
        elif action.dest == "backends":
            action.help = ("comma-separated static QDQ backends (int8-pt, int8-pc, a16w8, a16w16, int8-sym, int8-npu, "
                           "BASE+16bit:SEL, BASE+float:SEL); fp32 is the reference and is skipped; fp16, int8-dyn "
                           "and external backends are refused (default int8-pt,int8-pc)")
        elif action.dest == "out":
            action.help = "results directory (default runs/diagnose-<model>-<time>)"
    p.add_argument("--max-probes", type=options.positive_int, default=None,
                   help="diagnose a seeded subset of this many photos (default: all)")
    p.add_argument("--layer", default=None, type=options.text,
                   help="layer for the activation histogram (default: the worst quantized layer at the farthest distance)")
    p.add_argument("--snr-threshold", type=options.finite_float(-100.0, 200.0), default=10.0, help="SNR line in dB for the summary (default 10)")
    p.set_defaults(func=cmd_diagnose)

    p = _command(sub, "search-precision", help="find the layers worth 16 bit: predicted, confirmed, greedy, re-measured",
                 description="Rank layers by the quantization damage each adds at far range (diagnose), confirm "
                             "the top candidates by re-running them at 16 bit, promote greedily until the reliable "
                             "distance is within --tolerance of fp32 (or --target-tar holds at --target-distance), "
                             "then re-measure the final recipe through the sweep on another seed, with its cost.",
                 epilog="examples:\n  facequant search-precision --gallery fp32 --out runs/search\n"
                        "  facequant search-precision --base int8-npu --budget 4 --out runs/search-npu\n"
                        "  facequant search-precision --base int8-pt --target-tar 0.9 --target-distance 5\n")
    p.add_argument("--base", default="int8-pt", type=options.text, help="the INT8 recipe to improve (default int8-pt)")
    p.add_argument("--budget", type=options.int_range(1, 1000), default=6, help="most layers promoted to 16 bit (default 6)")
    p.add_argument("--candidates", type=options.positive_int, default=8, help="layers confirmed by re-running (default 8)")
    p.add_argument("--tolerance", type=options.finite_float(0.0, 100.0, low_open=True), default=0.25, help="reliable distance within this of fp32, metres (default 0.25)")
    p.add_argument("--target-tar", type=options.finite_float(0.0, 1.0, low_open=True), default=None, help="goal instead: this TAR ...")
    p.add_argument("--target-distance", type=options.finite_float(0.0, ranges.MAX_DISTANCE_M, low_open=True), default=None, help="... at this distance (metres)")
    p.add_argument("--no-refine", action="store_true",
                   help="keep the distance grid as given (default: add points every --tolerance metres where the "
                        "base's and fp32's reliable distances are decided)")
    _add_sweep_args(p)
    p.set_defaults(func=cmd_search_precision)

    p = sub.add_parser("cameras", help="list camera presets and the face size each gives by distance")
    p.set_defaults(func=cmd_cameras)

    from facequant.backends.external import LAYOUTS_HELP

    p = _command(sub, "export-probes", help="write the sweep's exact model inputs (NPY, PNG, manifest) to run on a device",
                 description="Write, for the enrolment set and each distance, the aligned degraded crops exactly "
                             "as a sweep feeds the model: PNGs (RGB uint8, model input size), one NCHW float32 "
                             "tensor per set (.npy), manifest.csv and manifest.json. Run the tensors on the "
                             "device, then sweep with --backends fp32,external:NAME=PATH and the same options.",
                 epilog=f"{LAYOUTS_HELP}\n\nexamples:\n  facequant export-probes --distances 1,3,6 --out probes/\n"
                        "  facequant sweep --distances 1,3,6 --backends fp32,int8-pt,external:hailo=probes/\n")
    _add_sweep_args(p)
    for action in p._actions:  # the sweep's --out has a default; an export goes where the user says
        if action.dest == "out":
            action.required, action.help = True, "export folder (an existing one is replaced only with --force, and only if facequant wrote it)"
    p.set_defaults(func=cmd_export_probes)

    p = sub.add_parser("validate-sim", help="check the distance simulation against real lower-resolution captures",
                       description="For each capture of the reference person, measure its face size, simulate that size "
                                   "from the high-resolution reference, and compare cosine to the reference embedding. "
                                   "Writes fidelity.csv and run.json into a results directory; |delta_cos| <= 0.02 "
                                   "means the simulation can be trusted.")
    p.add_argument("--model", default=None, type=options.text, help="model (default: the shared faceplugin model)")
    p.add_argument("--reference", required=True, type=options.text, help="high-resolution photo of the person")
    p.add_argument("--captures", required=True, type=options.text, help="folder of real lower-resolution or more distant captures")
    p.add_argument("--backends", default="fp32,int8-pt", type=options.name_list, help="backends to compare (default fp32,int8-pt)")
    p.add_argument("--out", type=options.out_dir, default=None,
                   help="results directory: fidelity.csv, run.json (default runs/validate-<time>)")
    p.add_argument("--force", action="store_true", help="replace a results directory facequant wrote")
    p.add_argument("--blur", type=options.blur_sigma, default=0.0, help="optics blur sigma to simulate, camera pixels")
    p.add_argument("--noise", type=options.noise_sigma, default=0.0, help="sensor noise sigma to simulate, 8-bit levels")
    p.add_argument("--jpeg", type=options.jpeg_quality, default=0,
                   help="JPEG quality to simulate, 1-100 (match your camera's encoder; default 0: off)")
    p.add_argument("--seed", type=options.seed, default=0, help="seed of the simulated noise (default 0)")
    p.set_defaults(func=cmd_validate_sim)

    p = sub.add_parser("tui", help="terminal UI: set up and run a sweep, watch results per distance, open old runs",
                       description="Setup (model, dataset, camera, distances, backends; prefilled from --config or "
                                   "the last run under --runs), a live sweep you can cancel without losing finished "
                                   "distances, and results: table coloured by TAR, cliff summary, plots, layer "
                                   "diagnostics, recommendation. Keys: r run, c cancel, e export CSV, ? help, q quit.")
    p.add_argument("--results", type=Path, default=None, help="open this results directory (nothing is recomputed)")
    p.add_argument("--config", type=Path, default=None, help="YAML prefilling the setup (same keys as facequant sweep)")
    p.add_argument("--runs", type=Path, default=Path("runs"), help="where runs are saved and listed (default runs/)")
    p.add_argument("--diagnostics", type=Path, default=None,
                   help="layer diagnostics folder (layers.csv, summary.csv); default: <results>/diagnostics")
    p.set_defaults(func=cmd_tui)
    # What "left at its default" means when a --config file fills options in: sweep's first
    # (it is built first), then the options only other commands have.
    for name, command in sub.choices.items():
        _OPTIONS[name] = {action.dest: action for action in command._actions if action.option_strings}
        for action in command._actions:  # as parsed: argparse converts string defaults with type=
            default = action.default
            if isinstance(default, str) and callable(action.type):
                default = action.type(default)
            _DEFAULTS.setdefault(action.dest, default)
    return parser


def _one_line(text: str) -> str:
    """A message as one printable line: file names may hold newlines and undecodable bytes."""
    return display(text).replace("\r", "\\r").replace("\n", "\\n")


def _tolerant_streams() -> None:
    # Paths from the command line may hold undecodable bytes (surrogates): print them as
    # \xNN, the rule of every output, rather than fail with UnicodeEncodeError after the work.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors=ESCAPE)  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            pass


def main(argv: Sequence[str] | None = None) -> int:
    from facequant.results.output import set_command

    _tolerant_streams()
    try:
        args = build_parser().parse_args(argv)
        set_command(sys.argv[1:] if argv is None else argv)  # recorded in each results directory's marker
        return int(args.func(args))
    except FacequantError as exc:
        print(f"facequant: error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and friends
        return 0
    except KeyboardInterrupt:
        print("facequant: interrupted; nothing was written", file=sys.stderr)
        return 130
    except Exception as exc:  # the safety net: a bug must still not show a user a traceback
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"facequant: internal error: {type(exc).__name__}: {_one_line(str(exc))} "
              f"(set {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)
        return 1


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors raised as FacequantError: one line, exit 2, like every other
    input problem (and a caller such as the TUI can catch them)."""

    def error(self, message: str) -> NoReturn:
        raise FacequantError(f"{message} (see {self.prog} --help)")


if __name__ == "__main__":
    sys.exit(main())
