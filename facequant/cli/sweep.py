"""`facequant sweep`: the distance sweep, printed as its summary (facequant.render.summary)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from facequant.cli import common
from facequant.config import Option, options_for, sweep_config

EPILOG = """examples:
  facequant sweep                                   # shared model + celebs13, fp32 vs int8-pt vs int8-pc
  facequant sweep --backends fp32,int8-pt,int8-pc,a16w8 --camera 720p-60 --out runs/kiosk
  facequant sweep --model ../shared/models/human-mobileface/mobileface.onnx,../shared/models/hse-faceres/faceres.onnx
                                                    # two models, same probes: models.csv, recommend per scenario
  facequant sweep --face-px 160,112,80,64,48,40,32,24 --genuine same-photo
  facequant models inspect ../shared/models/faceplugin-fr/fr_feature.onnx
  facequant validate-sim --reference photo_hi.jpg --captures captures/
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = common.command(sub, "sweep", _options, help="distance sweep: sweep.csv, cliff.csv, plots, run.json",
                       epilog=EPILOG,
                       description="Simulate each photo at each distance, embed it with every backend, and report "
                                   "TAR/FAR at one threshold (set on fp32 close-range impostors at --far), pre-norm "
                                   "statistics, and per backend the reliable distance and the cliff.")
    p.set_defaults(func=cmd_sweep)


def _options(parser: argparse.ArgumentParser) -> list[Option]:
    from facequant.sweep.config import SweepConfig

    return options_for("sweep", SweepConfig)


def cmd_sweep(args: argparse.Namespace) -> int:
    from facequant import api
    from facequant.cli.show import show
    from facequant.models.sources import results_stem, split_models
    from facequant.render.summary import render_summary

    values = common.values(args)
    config = sweep_config(values)
    models = split_models(config.model)
    if len(models) > 1:  # several models on the same probes, one results directory
        from facequant.render.multi_model import render_multi_summary

        output = common.output(values, "models")
        with common.progress_bar(values.get("quiet")) as progress:
            combined = api.sweep_models([dataclasses.replace(config, model=m) for m in models], output, progress)
        show(render_multi_summary(combined, output.dir))
        _say_report(output.dir)
        return 0
    output = common.output(values, results_stem(config.model))
    with common.progress_bar(values.get("quiet")) as progress:
        result = api.sweep(config, output, progress)
    show(render_summary(result, output.dir))
    _say_report(output.dir)
    return 0


def _say_report(out: Path) -> None:
    """Where the page to hand to a team is (a sweep writes it unless it failed, said then)."""
    from facequant.results.report import REPORT_HTML

    if (out / REPORT_HTML).is_file():
        print(f"report: {out / REPORT_HTML}")
