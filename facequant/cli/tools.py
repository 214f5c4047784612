"""`facequant models`, `cameras`, `validate-sim` and `tui`."""

from __future__ import annotations

import argparse
from pathlib import Path

from facequant import options
from facequant.cli import common
from facequant.config import MODELS_CHECK, RUN, TUI, VALIDATE, Option, options_for, positional
from facequant.errors import FacequantError
from facequant.params import build


def _check_options(parser: argparse.ArgumentParser) -> list[Option]:
    from facequant.analysis.model_check import ModelCheckConfig
    from facequant.sweep.config import SweepConfig

    positional(parser, SweepConfig, "model", MODELS_CHECK)
    return options_for(MODELS_CHECK, ModelCheckConfig)


def _validate_options(parser: argparse.ArgumentParser) -> list[Option]:
    from facequant.analysis.fidelity import ValidateConfig

    return options_for(VALIDATE, ValidateConfig, own=(
        Option("out", "results directory: fidelity.csv, run.json (default runs/validate-<time>)", RUN,
               type=options.out_dir),))


def _tui_options(parser: argparse.ArgumentParser) -> list[Option]:
    from facequant.sweep.config import SweepConfig

    return options_for(TUI, SweepConfig, own=(
        Option("results", "open this results directory (nothing is recomputed)", RUN, type=Path),
        Option("runs", "where runs are saved and listed", RUN, default=Path("runs"), type=Path),
        Option("diagnostics", "layer diagnostics folder (layers.csv, summary.csv); default: <results>/diagnostics",
               RUN, type=Path),
        Option("out", "prefills 'save to': the run's results directory (default runs/<model>-<time>)", RUN,
               type=options.out_dir)))


def register(sub: argparse._SubParsersAction) -> None:
    models = sub.add_parser("models", help="inspect or obtain embedding models")
    msub = models.add_subparsers(dest="models_command", required=True)
    p = msub.add_parser("inspect", help="print the inferred spec of a model (input, size, mean/std, opset, batch)")
    p.add_argument("model", help="ONNX path, 'faceplugin' or an insightface pack name")
    p.set_defaults(func=cmd_models_inspect)
    p = common.command(msub, "check", _check_options,
                       help="score candidate preprocessings of a model on photos (verification AUC) and show what its "
                            "graph does at both ends",
                       description="Embed close-range aligned crops of a seeded, identity-stratified subset of DIR "
                                   "under each candidate preprocessing (RGB/BGR x raw, x/255, (x-127.5)/127.5, "
                                   "(x-127.5)/128, Caffe means, ImageNet mean/std, and the spec inferred from the "
                                   "graph), score each by verification AUC on genuine vs impostor pairs, and say "
                                   "which one a sweep would use. Also reports in-graph input normalization and an "
                                   "output L2 normalization (cut off so that the pre-norm is measured). Its options "
                                   "mean what they mean to facequant sweep, and --config takes the same keys.")
    p.set_defaults(func=cmd_models_check)
    p = msub.add_parser("pull", help="fetch a model: 'faceplugin' via npm pack (sha256-verified), or an insightface pack")
    p.add_argument("name", help="faceplugin, buffalo_l, buffalo_s or antelopev2")
    p.add_argument("--dest", help="folder for faceplugin (default: the cache)")
    p.set_defaults(func=cmd_models_pull)

    p = sub.add_parser("cameras", help="list camera presets and the face size each gives by distance")
    p.set_defaults(func=cmd_cameras)

    p = common.command(sub, "validate-sim", _validate_options,
                       help="check the distance simulation against real lower-resolution captures",
                       description="For each capture of the reference person, measure its face size, simulate that "
                                   "size from the high-resolution reference, and compare cosine to the reference "
                                   "embedding. Writes fidelity.csv and run.json into a results directory; "
                                   "|delta_cos| <= 0.02 means the simulation can be trusted.")
    p.set_defaults(func=cmd_validate_sim)

    p = common.command(sub, "tui", _tui_options,
                       help="terminal UI: set up and run a sweep, watch results per distance, open old runs",
                       description="Setup (model, dataset, camera, distances, backends; prefilled from these options "
                                   "and --config as `facequant sweep` takes them, else from the last run under "
                                   "--runs), a live sweep you can cancel without losing finished distances, and "
                                   "results: table coloured by TAR, cliff summary, plots, layer diagnostics, "
                                   "recommendation. Keys: r run, c cancel, e export CSV, ? help, q quit.",
                       epilog="examples:\n  facequant tui --model my.onnx --data photos/ --backends fp32,int8-pt\n"
                              "  facequant tui --config configs/example-sweep.yaml\n"
                              "  facequant tui --results runs/first\n")
    p.set_defaults(func=cmd_tui)


def cmd_models_check(args: argparse.Namespace) -> int:
    from facequant.analysis.model_check import ModelCheckConfig, run_check
    from facequant.cli.show import show
    from facequant.render.check import render_check

    config: ModelCheckConfig = build(ModelCheckConfig, common.values(args))
    s = config.sweep
    show(render_check(run_check(s.model, s.data, s.preprocessing, s.model_overrides, s.crop_margin, s.seed,
                                config.photos)))
    return 0


def cmd_models_inspect(args: argparse.Namespace) -> int:
    from facequant import api
    from facequant.models.spec import describe

    print(describe(api.inspect_model(args.model)))
    return 0


def cmd_models_pull(args: argparse.Namespace) -> int:
    from facequant.models.sources import faceplugin_cache, pull_faceplugin, resolve_model

    if args.name == "faceplugin":
        dest = Path(args.dest) if args.dest else faceplugin_cache()
        path = pull_faceplugin(dest)
    else:
        path = resolve_model(args.name)
    print(path)
    return 0


def cmd_cameras(args: argparse.Namespace) -> int:
    from facequant import api

    for name, cam in api.cameras().items():
        at = ", ".join(f"{d:g} m: {cam.face_px(d):.0f} px" for d in (0.5, 1, 3, 5, 10))
        print(f"{name:10s} {cam.description}\n{'':10s} focal {cam.focal:.0f} px; aligned face {at}")
    return 0


def cmd_validate_sim(args: argparse.Namespace) -> int:
    from facequant import api
    from facequant.analysis.fidelity import FIDELITY_CSV, ValidateConfig
    from facequant.cli.show import show
    from facequant.render.fidelity import render_fidelity

    values = common.values(args)
    config: ValidateConfig = build(ValidateConfig, values)
    output = common.output(values, "validate")
    with common.progress_bar(values.get("quiet")) as progress:
        table = api.validate_simulation(config, output, progress)
    show(render_fidelity(table, output.dir / FIDELITY_CSV))
    return 0


def cmd_tui(args: argparse.Namespace) -> int:
    try:  # Textual loads only for the TUI: the other commands stay as quick to start as before
        from tui.app import run_tui
    except ModuleNotFoundError as exc:
        if exc.name not in ("tui", "textual", "textual_plotext"):
            raise
        raise FacequantError(f"the TUI needs {exc.name}: pip install -e . (it is a dependency)") from exc
    # The sweep options given on the command line prefill the form (over --config, as for
    # sweep), a value equal to the default included.
    given = common.given(args)
    run_only = {"config", "results", "runs", "diagnostics"}
    prefill = {o.dest: getattr(args, o.dest) for o in args.options if o.dest in given and o.name not in run_only}
    return run_tui(results=args.results, config=args.config, runs_dir=args.runs, diagnostics=args.diagnostics,
                   prefill=prefill)
