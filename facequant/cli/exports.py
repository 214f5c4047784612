"""`facequant export-probes` and `facequant export-precision`: what a device or its compiler needs."""

from __future__ import annotations

import argparse
import re

from facequant import options
from facequant.cli import common
from facequant.config import RUN, Option, options_for, positional, sweep_config
from facequant.params import build

#: --force as every command has it, worded for an export folder.
_FORCE = Option("force", "replace an existing export folder, only one facequant wrote (its .facequant.json lists "
                "every file in it)", RUN, flag=True)


def _probes_options(parser: argparse.ArgumentParser) -> list[Option]:
    from facequant.sweep.config import SweepConfig

    return options_for("export-probes", SweepConfig, own=(
        Option("out", "export folder (default runs/probes-<model>-<time>)", RUN, type=options.out_dir), _FORCE))


def _precision_options(parser: argparse.ArgumentParser) -> list[Option]:
    from facequant.backends.quantize.export import PrecisionExportConfig

    positional(parser, PrecisionExportConfig, "recipe", "export-precision")
    return options_for("export-precision", PrecisionExportConfig, own=(
        Option("out", "export folder (default runs/precision-<recipe>-<time>)", RUN, type=options.out_dir), _FORCE))


def register(sub: argparse._SubParsersAction) -> None:
    from facequant.backends.external import LAYOUTS_HELP

    p = common.command(
        sub, "export-probes", _probes_options,
        help="write the sweep's exact model inputs (NPY, PNG, manifest) to run on a device",
        description="Write, for the enrolment set and each distance, the aligned degraded crops exactly as a sweep "
                    "feeds the model: PNGs (RGB uint8, model input size), one NCHW float32 tensor per set (.npy), "
                    "manifest.csv, manifest.json and run.json. Run the tensors on the device, then sweep with "
                    "--backends fp32,external:NAME=PATH and the same options.",
        epilog=f"{LAYOUTS_HELP}\n\nexamples:\n  facequant export-probes --distances 1,3,6 --out probes/\n"
               "  facequant sweep --distances 1,3,6 --backends fp32,int8-pt,external:hailo=probes/\n")
    p.set_defaults(func=cmd_export_probes)

    p = common.command(
        sub, "export-precision", _precision_options,
        help="export a mixed-precision recipe: ORT JSON, per-layer JSON, Hailo .alls",
        description="Write the recipe as ORT quantize_static options (TensorQuantOverrides; reloads into the same "
                    "model), a per-layer precision JSON for other toolchains, and Hailo model-script lines "
                    "`quantization_param(<layer>, precision_mode=a16_w16)`, calibrated on the photos, camera and "
                    "distances a sweep with the same options calibrates on (and its --calib-method).",
        epilog="example:\n  facequant export-precision int8-pt+16bit:last3 --name-map names.csv --out exports/\n"
               "names.csv: onnx,hailo rows (Hailo renames layers; unmapped ones are warned about)")
    p.set_defaults(func=cmd_export_precision)


def cmd_export_probes(args: argparse.Namespace) -> int:
    from facequant import api

    values = common.values(args)
    config = sweep_config(values)
    from facequant.models.sources import results_stem

    output = common.output(values, f"probes-{results_stem(config.model)}")
    with common.progress_bar(values.get("quiet")) as progress:
        summary = api.export_probes(config, output, progress)
    print(summary.line())
    return 0


def cmd_export_precision(args: argparse.Namespace) -> int:
    from facequant import api
    from facequant.backends.quantize.export import PrecisionExportConfig

    values = common.values(args)
    config: PrecisionExportConfig = build(PrecisionExportConfig, {**values, "backends": "fp32"})
    stem = re.sub(r"[^A-Za-z0-9._+-]+", "_", config.recipe)[:60]  # recipes hold ':', ';', '=' and paths
    output = common.output(values, f"precision-{stem}")
    with common.progress_bar(values.get("quiet")) as progress:
        result = api.export_precision(config, output, progress)
    for warning in result["warnings"]:
        common.warn(warning)
    for key in ("ort", "precision", "hailo", "run"):
        print(result[key])
    return 0
