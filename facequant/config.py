"""Every command's options, once: one table row per option (name, converter, default, help,
group, the commands that take it, and the SweepConfig field it sets).

The row drives the argparse groups (facequant.cli), the keys a --config YAML file may hold
(read_config: each value through the row's own converter), and the TUI's prefill
(sweep_config). Adding a sweep option is one row in SWEEP_OPTIONS plus the SweepConfig field
it sets: `field` names it (a dotted name for a field of a nested config, "degradation.jpeg_quality"),
`to_field` converts the parsed value when it is not stored as is, and `commands` says which
commands list it in --help (by default the commands that run sweeps).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from facequant import options, ranges, settings, yamlfiles
from facequant.errors import FacequantError

if TYPE_CHECKING:  # the engine imports onnxruntime; the option table must stay cheap to import
    from facequant.sweep.config import SweepConfig

# Option groups, in --help order.
WHAT, SIMULATION, PROTOCOL, QUANTIZATION, COST, RUN, SCALE = (
    "what to evaluate", "distance simulation", "matching protocol", "quantization", "cost", "run", "scale")
GROUPS = (WHAT, SIMULATION, PROTOCOL, QUANTIZATION, COST, RUN, SCALE)

# Commands, by what they do with a sweep config.
SWEEPING = ("sweep", "study", "search-precision")  # run full sweeps (matching, threshold, cost)
DIAGNOSE, EXPORT_PROBES, EXPORT_PRECISION, VALIDATE, TUI = (
    "diagnose", "export-probes", "export-precision", "validate-sim", "tui")
#: Every command that writes a results directory: --out, --force, --config, --quiet, --seed.
WRITERS = (*SWEEPING, DIAGNOSE, EXPORT_PROBES, EXPORT_PRECISION, VALIDATE)
ALL = (*WRITERS, TUI)
#: Commands that build the sweep's probes (model, faces, simulated distances) ...
PROBES = (*SWEEPING, DIAGNOSE, EXPORT_PROBES, EXPORT_PRECISION, TUI)
#: ... and those of them that calibrate quantized models.
CALIBRATES = (*SWEEPING, DIAGNOSE, EXPORT_PRECISION, TUI)


@dataclass(frozen=True)
class Option:
    """One command-line option (--NAME), also a config-file key (NAME, '-' or '_')."""

    name: str
    help: str | Callable[[], str]  # a callable for help that lists presets (read when --help is built)
    group: str = RUN
    default: object = None
    type: Callable[[str], object] | None = None
    choices: tuple[str, ...] | None = None
    flag: bool = False  # store_true
    repeat: bool = False  # may be given several times (action="append")
    metavar: str | None = None
    required: bool = False
    commands: tuple[str, ...] = (*SWEEPING, TUI)
    field: str | None = None  # the SweepConfig field it sets; None: not part of a sweep config
    to_field: Callable[[object], object] | None = None  # parsed value -> field value (default: as is)

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    def help_text(self) -> str:
        return self.help() if callable(self.help) else self.help

    def add_to(self, group: argparse._ActionsContainer) -> argparse.Action:
        kwargs: dict[str, object] = {"help": self.help_text(), "dest": self.dest}
        if self.flag:
            return group.add_argument(f"--{self.name}", action="store_true", **kwargs)  # type: ignore[arg-type]
        kwargs.update(default=[] if self.repeat else self.default, type=self.type, choices=self.choices,
                      metavar=self.metavar, required=self.required)
        if self.repeat:
            kwargs["action"] = "append"
        return group.add_argument(f"--{self.name}", **kwargs)  # type: ignore[arg-type]


def _backends_help() -> str:
    from facequant.backends.registry import NAME_HELP, available_backends

    return (f"comma-separated, from: {', '.join(available_backends())} (fp32 is always added as the reference). "
            f"{NAME_HELP}")


def _camera_help() -> str:
    from facequant.simulate.camera import load_cameras

    return f"preset ({', '.join(load_cameras())}) or WIDTHxHFOV, e.g. 1920x90"


def _preprocessing_help() -> str:
    from facequant.models.preprocessing import preprocessing_choices

    return ("auto (default): score candidate preprocessings on close-range pairs and use the best (the graph's own "
            f"spec unless one clearly beats it); or one of {', '.join(preprocessing_choices()[1:])} "
            "(see facequant models check)")


def _default_data(value: object) -> str:
    if value:
        return str(value)
    data = settings.default_dataset_path()
    if not data.is_dir():
        raise FacequantError(f"{data}: no default photos here (set {settings.SHARED_ENV}); pass --data DIR or --data lfw")
    return str(data)


def _backend_tuple(value: object) -> tuple[str, ...]:
    from facequant.backends.registry import parse_backends

    return tuple(parse_backends(str(value)))


def _distances_or_default(value: object) -> object:
    from facequant.simulate.camera import DEFAULT_DISTANCES_M

    return value or DEFAULT_DISTANCES_M


#: The sweep's options, in --help order. A row's `commands` lists who takes it.
SWEEP_OPTIONS: tuple[Option, ...] = (
    Option("model", "ONNX embedding model path, 'faceplugin', or an insightface pack (buffalo_l, buffalo_s, "
           "antelopev2). Default: the faceplugin model in the shared folder. `sweep` takes several, comma-separated: "
           "the same probes through each, compared in one run (models.csv, a recommendation among (model, "
           "backend) pairs).", WHAT, type=options.text,
           commands=(*PROBES, VALIDATE), field="model", to_field=lambda v: v or "faceplugin"),
    Option("data", "folder of identity folders (person/photo.jpg). Default: celebs13 in the shared "
           "folder; 'lfw' (every LFW photo) or 'lfw-pairs' (LFW's official pairs), through scikit-learn where a network "
           "exists.", WHAT, type=options.text, commands=PROBES, field="data", to_field=_default_data),
    Option("pairs", "pairs CSV (image_a,image_b,same_identity) to compare instead of every photo pair", WHAT,
           type=options.text, field="pairs"),
    Option("backends", _backends_help, WHAT, default="fp32,int8-pt,int8-pc", type=options.name_list,
           commands=("sweep", DIAGNOSE, TUI), field="backends", to_field=_backend_tuple),
    Option("config", "YAML file with any of these options (keys as the long option names, '-' or '_')", WHAT,
           type=Path, commands=ALL),
    Option("model-override", "override the inferred model spec, e.g. mean=127.5 std=127.5 channel_order=BGR, or per "
           "channel mean=103.939,116.779,123.68 std=1,1,1 (in the model's channel order); a preprocessing set here is "
           "checked on data and kept, with a warning when it scores clearly worse than the best", WHAT,
           type=options.model_override, repeat=True, metavar="KEY=VALUE", commands=PROBES,
           field="model_overrides", to_field=lambda v: dict(v or [])),  # type: ignore[arg-type]
    Option("preprocessing", _preprocessing_help, WHAT, default="auto", type=options.preprocessing, metavar="NAME",
           commands=PROBES, field="preprocessing", to_field=str),
    Option("crop-margin", "extra border around the aligned face, a fraction of it in [0, 1], for models trained on "
           "looser crops (default 0: the ArcFace template's crop)", WHAT, default=0.0, type=options.crop_margin,
           metavar="FRACTION", commands=PROBES, field="crop_margin", to_field=float),

    Option("camera", _camera_help, SIMULATION, default="1080p-90", type=options.camera, commands=PROBES,
           field="camera", to_field=str),
    Option("distances", "metres, '0.5,1,2' or 'START:STOP:N' (geometric). Default: 0.5 to 12 m, 12 steps",
           SIMULATION, type=options.distances, commands=PROBES, field="distances_m", to_field=_distances_or_default),
    Option("face-px", "sweep in face pixels instead of metres, e.g. 160,112,80,56,40,28", SIMULATION,
           type=options.face_px, commands=PROBES, field="face_px"),
    Option("iod-mm", f"physical inter-ocular distance, {ranges.IOD_RANGE} mm (default 63 mm)", SIMULATION,
           default=63.0, type=options.iod_mm, commands=PROBES, field="iod_mm", to_field=float),
    Option("blur", "optics blur sigma in camera pixels (default off)", SIMULATION, default=0.0,
           type=options.blur_sigma, commands=(*PROBES, VALIDATE), field="degradation.blur_sigma_px", to_field=float),
    Option("noise", "sensor noise sigma in 8-bit levels (default off)", SIMULATION, default=0.0,
           type=options.noise_sigma, commands=(*PROBES, VALIDATE), field="degradation.noise_sigma", to_field=float),
    Option("jpeg", "JPEG quality 1-100 applied at camera resolution (default 0: off)", SIMULATION, default=0,
           type=options.jpeg_quality, commands=(*PROBES, VALIDATE), field="degradation.jpeg_quality", to_field=int),

    Option("genuine", "genuine pairs: two photos of a person (default), or a photo against its own enrolment",
           PROTOCOL, default="different-photo", choices=("different-photo", "same-photo"), field="genuine_mode"),
    Option("gallery", "backend that enrols the close-range gallery (default: the backend under test)", PROTOCOL,
           default="same-backend", choices=("same-backend", "fp32"), field="gallery"),
    Option("far", "target FAR that sets the threshold on fp32 close-range impostors", PROTOCOL, default=1e-3,
           type=options.probability, field="target_far", to_field=float),
    Option("threshold", "fixed cosine threshold in [-1, 1] (overrides --far)", PROTOCOL, type=options.cosine,
           field="threshold"),
    Option("multi-face", "photos with several faces: use the most confident face (default) or skip the photo",
           PROTOCOL, default="primary", choices=("primary", "skip"), commands=PROBES, field="multi_face"),
    Option("protocol", "what the cliff, the recommendation and the TUI read: 1:1 verification (TAR at --far, "
           "default) or 1:N identification (TPIR at --fpir); both are measured in every run (sweep.csv, "
           "identification.csv)", PROTOCOL, default="verification", choices=("verification", "identification"),
           field="protocol"),
    Option("fpir", "identification: target false-positive identification rate that sets its threshold on fp32 "
           "close-range non-mated probes (default 0.01)", PROTOCOL, default=1e-2, type=options.probability,
           field="target_fpir", to_field=float),
    Option("nonmated-fraction", "identification: share of the people left out of the gallery, whose photos must be "
           "rejected (seeded; default 0.2)", PROTOCOL, default=0.2, type=options.probability,
           field="nonmated_fraction", to_field=float),

    Option("calib-size", "calibration photos, a seeded subset at close range (default 32)", QUANTIZATION,
           default=32, type=options.positive_int, commands=CALIBRATES, field="calibration_size", to_field=int),
    Option("calib-data", "folder of photos to calibrate on (default: the evaluation photos)", QUANTIZATION,
           type=options.text, commands=CALIBRATES, field="calibration_data"),
    Option("calib-distances", "metres to calibrate at, e.g. '0.5,3,6' (distance-aware calibration; default: the "
           "closest only)", QUANTIZATION, type=options.distances, commands=CALIBRATES,
           field="calibration_distances_m", to_field=lambda v: v or None),
    Option("calib-method", "calibration method for every quantized backend (default: minmax)", QUANTIZATION,
           choices=("minmax", "entropy", "percentile"), commands=(*SWEEPING, DIAGNOSE, TUI),
           field="calibration_method"),

    Option("device-profile", "YAML with a device's measured latency per backend (see configs/devices/); "
           "default: CPU timing only", COST, type=options.text, field="device_profile"),
    Option("no-latency", "skip timing each backend at batch 1 after the sweep", COST, flag=True,
           field="measure_cost", to_field=lambda v: not v),

    Option("out", "results directory (default runs/<model>-<time>)", RUN, type=options.out_dir, commands=ALL),
    Option("force", "replace an existing results directory, only one facequant wrote (its .facequant.json "
           "lists every file in it)", RUN, flag=True, commands=WRITERS),
    Option("seed", "seed for subsets, noise and calibration (default 0)", RUN, default=0, type=options.seed,
           commands=ALL, field="seed", to_field=int),
    Option("batch-size", "inference batch size (default 64)", RUN, default=64, type=options.positive_int,
           commands=(*SWEEPING, DIAGNOSE, TUI), field="batch_size", to_field=int),
    Option("quiet", "no progress bar", RUN, flag=True, commands=WRITERS),

    Option("save-comparisons", "also write every comparison as rows, comparisons.parquet (N^2 rows: large; "
           "default: the genuine ones, genuine.parquet, and impostors as counts)", SCALE, flag=True,
           field="save_comparisons", to_field=bool),
    Option("executor", "where embeddings are computed: this process (default) or a Ray cluster "
           "(pip install -e '.[ray]'); the numbers are the same", SCALE, default="local", choices=("local", "ray"),
           field="executor"),
    Option("ray-address", "Ray cluster to join, e.g. 10.0.0.5:6379 or 'auto' (default: start a local Ray "
           "instance)", SCALE, type=options.text, field="ray_address"),
    Option("ray-timeout", "seconds to wait for the Ray cluster to answer before giving up, in (0, 3600] (default 30; "
           "FACEQUANT_RAY_LOGS=1 shows Ray's own log lines)", SCALE, default=30.0, type=options.ray_timeout,
           field="ray_timeout_s", to_field=float),
    Option("no-embedding-cache", "compute every embedding afresh (default: reuse the ones cached for the same "
           "model, recipe and probe crop)", SCALE, flag=True, field="embedding_cache", to_field=lambda v: not v),
    Option("chunk-size", "photos whose crops are held in memory at once (default 256)", SCALE, default=256,
           type=options.positive_int, field="chunk_size", to_field=int),
    Option("crop-memory", "MiB of aligned crops a sweep may hold in memory, 0 to 1048576; past it they stream "
           "from the crop cache (default: a quarter of the available memory, at most 1024)", SCALE,
           type=options.int_range(0, 1 << 20), field="crop_memory_mb",
           to_field=lambda v: None if v is None else int(v)),
)

def _nested_classes() -> dict[str, type]:
    from facequant.simulate.camera import Degradation

    return {"degradation": Degradation}  # "degradation.blur_sigma_px" is a field of Degradation


def options_for(command: str, own: Sequence[Option] = ()) -> list[Option]:
    """The options `command` takes: the table's rows naming it, then its own; an own option
    with a table row's name replaces that row in place (another help or default)."""
    mine = {o.name: o for o in own}
    table = [mine.pop(o.name, o) for o in SWEEP_OPTIONS if command in o.commands or o.name in mine]
    return table + list(mine.values())


def add_options(parser: argparse.ArgumentParser, opts: Sequence[Option]) -> None:
    """argparse groups: GROUPS in their order, then a command's own groups as they come."""
    names = [g for g in GROUPS if any(o.group == g for o in opts)]
    names += [g for g in dict.fromkeys(o.group for o in opts) if g not in names]
    groups = {name: parser.add_argument_group(name) for name in names}
    for o in opts:
        o.add_to(groups[o.group])


# --------------------------------------------------------------------------- config files


def read_config(path: Path, opts: Iterable[Option]) -> dict[str, object]:
    """A --config YAML as {dest: value}, every value converted and checked as on the command
    line; a one-line FacequantError naming the file and the key otherwise."""
    by_dest = {o.dest: o for o in opts}
    try:
        raw = yamlfiles.safe_load(Path(path).read_text(encoding="utf-8-sig"))
    except yaml.YAMLError as exc:  # the file:line, then why (a duplicate key, an alias, bad syntax)
        line = yamlfiles.error_line(exc)
        where = f"{path}:{line}" if line is not None else f"{path}"
        raise FacequantError(f"{where}: cannot read config: not valid YAML ({yamlfiles.error_reason(exc)})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise FacequantError(f"{path}: cannot read config ({getattr(exc, 'strerror', None) or exc})") from exc
    if raw is None:
        raise FacequantError(f"{path}: config is empty (expected a mapping of option: value)")
    if not isinstance(raw, dict):
        raise FacequantError(f"{path}: config must be a mapping of option: value, got a {type(raw).__name__}")
    values: dict[str, object] = {}
    for key, value in raw.items():
        option = by_dest.get(str(key).replace("-", "_"))
        if option is None or option.name == "config":
            raise FacequantError(f"{path}: unknown option '{key}'")
        values[option.dest] = _config_value(path, str(key), option, value)
    return values


def _config_value(path: Path, key: str, option: Option, value: object) -> object:
    """One config value through the option's own converter (flags must be YAML booleans)."""
    def bad(why: str) -> FacequantError:
        return FacequantError(f"{path}: {key}: {why}")

    if option.flag:  # a flag such as --quiet: 'no' in quotes is a string, and true
        if not isinstance(value, bool):
            raise bad(f"must be true or false (an unquoted YAML boolean), got {yamlfiles.excerpt(value)}")
        return value
    if isinstance(value, bool) and option.choices is not None and ("on" if value else "off") in option.choices:
        value = "on" if value else "off"  # YAML 1.1 reads an unquoted off as false: `latency: off` means the choice
    if value is None or value == "" or isinstance(value, bool):
        raise bad(f"expected a value for --{key.replace('_', '-')}, got {yamlfiles.excerpt(value)}")
    if option.repeat:  # --model-override: a mapping, or KEY=VALUE items
        try:
            if isinstance(value, dict):
                return [options.model_override_item(str(k), v) for k, v in value.items()]
            return [option.type(str(item)) for item in (value if isinstance(value, list) else [value])]  # type: ignore[misc]
        except argparse.ArgumentTypeError as exc:
            raise bad(str(exc)) from None
    text = _config_text(value)
    if text is None:
        raise bad(f"expected text or a number, got a {type(value).__name__}")
    if option.choices is not None and text not in option.choices:
        raise bad(f"must be one of {', '.join(map(str, option.choices))}, got {yamlfiles.excerpt(value)}")
    if option.type is None:
        return text
    try:
        return option.type(text)
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


def defaults(opts: Iterable[Option]) -> dict[str, object]:
    """Each option's default as parsed (a string default goes through its converter, as argparse does)."""
    out: dict[str, object] = {}
    for o in opts:
        value = [] if o.repeat else (False if o.flag else o.default)
        out[o.dest] = o.type(value) if isinstance(value, str) and o.type is not None else value
    return out


def merge_config(values: Mapping[str, object], opts: Sequence[Option], given: Collection[str]) -> dict[str, object]:
    """values (a command line's, by dest) with its --config file filled in: defaults < the file
    < the command line, which wins for every dest in `given` (the options it gave), whether or
    not the value it gave equals the default."""
    merged = dict(values)
    path = merged.get("config")
    if not path:
        return merged
    for dest, value in read_config(Path(str(path)), opts).items():
        if dest not in given:
            merged[dest] = value
    return merged


# --------------------------------------------------------------------------- sweep configs


def sweep_config(values: Mapping[str, object]) -> SweepConfig:
    """A SweepConfig from option values by dest (a parsed command line, a config file, the
    TUI's form): every row with a `field`, missing values at the row's default."""
    from facequant.sweep.config import SweepConfig

    given = {**defaults(SWEEP_OPTIONS), **{k: v for k, v in values.items() if v is not None}}
    fields: dict[str, object] = {}
    nested: dict[str, dict[str, object]] = {}
    for o in SWEEP_OPTIONS:
        if o.field is None:
            continue
        value = given.get(o.dest)
        value = o.to_field(value) if o.to_field is not None else value
        head, _, tail = o.field.partition(".")
        if tail:
            nested.setdefault(head, {})[tail] = value
        else:
            fields[o.field] = value
    classes = _nested_classes()
    for head, kwargs in nested.items():
        fields[head] = classes[head](**kwargs)
    return SweepConfig(**fields)  # type: ignore[arg-type]


def default_out(stem: str, runs_dir: Path = Path("runs")) -> Path:
    """runs/<stem>-<time>, as every command names its results; a suffix if that second is taken."""
    name = f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    out, n = runs_dir / name, 2
    while out.exists():
        out, n = runs_dir / f"{name}-{n}", n + 1
    return out

