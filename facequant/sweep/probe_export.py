"""export-probes: write a sweep's exact model inputs (tensors, PNGs, manifest) to run on a device.

The files and the ways to bring a device's embeddings back are described in
facequant.backends.external, which reads them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from facequant import __version__
from facequant.backends.base import preprocess
from facequant.backends.external import (
    EMB_SUFFIX,
    FORMAT,
    MANIFEST_COLUMNS,
    MANIFEST_CSV,
    MANIFEST_JSON,
    README_TXT,
    tensor_name,
)
from facequant.errors import FacequantError
from facequant.models.spec import format_channels
from facequant.names import ESCAPE
from facequant.results.jsonfile import write_json, write_run_json
from facequant.results.output import check_output_dir, inputs_of, staged_output
from facequant.sweep.probes import ProbeSet

RUN_JSON = "run.json"
README_TEMPLATE = """\
facequant probe export ({format}, facequant {version})

These are the exact model inputs of a facequant sweep. Run them on the device, bring back the
embeddings, and the sweep compares the device with the float model on identical inputs.

Files
  manifest.csv   one row per crop: id, image, identity, kind (enrol|probe), distance_m, face_px,
                 simulated, npy (tensor file), row (index in it), png (the crop as an image)
  manifest.json  model ({model}, sha256 {sha}), spec, camera, sweep config, id order per tensor
  *.npy          model input, float32 NCHW [N, 3, {h}, {w}], already preprocessed:
                 (pixel - {mean}) / {std}, channels in {order} order. Feed the rows as they are,
                 {batch}, and keep the row order. Sets: {sets}.
  png/<set>/     the same crops as RGB uint8 {h}x{w} PNGs, sorted names = row order, for
                 toolchains that do their own preprocessing (use the mean/std/order above).

Bring back raw embeddings (float, before any L2 normalisation: the pre-norm is measured; a
quantized output must be dequantized), D = {dim}, as one of:
  1. <set>.emb.npy [N, D] beside manifest.csv for each tensor you ran (enrol.npy ->
     enrol.emb.npy), same row order; PATH = that folder. In Python on the device (the
     tensors listed in manifest.json, not every *.npy: a second run would feed the
     *.emb.npy files back in):
       for t in json.load(open("manifest.json"))["tensors"]: np.save(t["bring_back"], run_model(np.load(t["npy"])))
  2. embeddings.npy [{rows}, D] beside manifest.csv, in manifest.csv order; PATH = the folder.
  3. a CSV id,e0,...,e{last} with the ids of manifest.csv; PATH = the file.
  4. an .npz with arrays ids (strings) and embeddings [N, D]; PATH = the file.

Then run the sweep with the same options as this export (model, data, camera, distances,
degradation, seed) and add the device as a backend:
  facequant sweep ... --backends fp32,int8-pt,external:NAME=PATH
"""


def _safe(text: str) -> str:
    """A file-name-safe form of an image key (folders flattened: png/<set>/ stays one level)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "image"


@dataclass(frozen=True)
class ExportSummary:
    out: Path
    n_photos: int
    tensors: tuple[str, ...]  # tensor file names, manifest order
    n_crops: int
    n_not_simulated: int  # probes a sweep leaves out of every metric (still exported: ids stay complete)
    input_shape: tuple[int, ...]  # per crop: (3, H, W)

    def line(self) -> str:
        return (f"exported {self.n_crops} crops ({self.n_photos} photos x {len(self.tensors)} sets: "
                f"{', '.join(self.tensors)}; float32 NCHW {list(self.input_shape)}; "
                f"{self.n_not_simulated} probes not simulable) to {self.out}; see {self.out / README_TXT}")


def export_probes(ps: ProbeSet, out: Path, force: bool = False,
                  progress: Callable[[str, int, int], None] | None = None,
                  run: dict[str, object] | None = None) -> ExportSummary:
    """Write the enrolment set and each distance's probes exactly as the sweep feeds them to a
    backend: PNG crops, one NCHW float32 tensor per set, manifest.csv and manifest.json, and
    run.json (`run`: the command's record, as every results directory has one).
    Written to a staging folder and swapped in when complete, like a results directory."""
    out = Path(out)
    check_output_dir(out, force, inputs_of(ps.config))  # before any work
    spec = ps.spec
    h, w = spec.input_size
    sets: list[tuple[float | None, int | None]] = [(None, None)] + [(d, i) for i, d in enumerate(ps.distances)]
    names = [tensor_name(d) for d, _ in sets]
    if len(set(names)) != len(names):  # two distances equal to 6 significant digits: ids would collide
        raise FacequantError(f"distances {list(ps.distances)}: two format to the same probe id; space them further apart")
    width = max(4, len(str(len(ps.images) - 1)))

    rows: list[dict[str, object]] = []
    tensors: list[dict[str, object]] = []
    n_not_simulated = 0
    with staged_output(out, force, inputs_of(ps.config)) as staging:
        for k, ((distance, d_index), name) in enumerate(zip(sets, names, strict=True)):
            if d_index is None:
                crops = ps.gallery_crops()
                ok = np.ones(len(ps.images), dtype=bool)  # enrolment is always used
                face_px = [ps.faces[img.key].native_face_px for img in ps.images]  # each photo's own size
                ids = ps.gallery_ids()
            else:
                assert distance is not None
                crops, ok, px = ps.probe_crops(d_index)
                face_px = [px] * len(ps.images)
                ids = ps.probe_ids(distance)
                n_not_simulated += int((~ok).sum())
            if crops.shape[1:3] != (h, w):  # a non-square input: the PNG is what preprocess would resize to
                crops = np.stack([cv2.resize(c, (w, h), interpolation=cv2.INTER_LINEAR) for c in crops])
            tensor = preprocess(crops, spec)
            np.save(staging / f"{name}.npy", tensor)
            (staging / "png" / name).mkdir(parents=True)
            for row, (img, crop) in enumerate(zip(ps.images, crops, strict=True)):
                png = Path("png") / name / f"{row:0{width}d}_{_safe(img.key)}.png"
                # imencode + a Python write, not cv2.imwrite: OpenCV crashes on a path that is
                # not valid UTF-8 (an --out folder named in Latin-1).
                encoded_ok, encoded = cv2.imencode(".png", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
                if not encoded_ok:
                    raise FacequantError(f"{out / png}: cannot encode PNG")
                (staging / png).write_bytes(encoded.tobytes())
                rows.append({"id": ids[row], "image": img.key, "identity": img.identity,
                             "kind": "enrol" if distance is None else "probe", "distance_m": distance,
                             "face_px": round(float(face_px[row]), 3), "simulated": bool(ok[row]),
                             "npy": f"{name}.npy", "row": row, "png": png.as_posix()})
            tensors.append({"npy": f"{name}.npy", "bring_back": f"{name}{EMB_SUFFIX}",
                            "kind": "enrol" if distance is None else "probe", "distance_m": distance,
                            "face_px": None if d_index is None else float(face_px[0]),
                            "shape": list(tensor.shape), "dtype": "float32", "ids": ids})
            if progress:
                progress("export", k + 1, len(sets))

        pd.DataFrame(rows, columns=MANIFEST_COLUMNS).to_csv(staging / MANIFEST_CSV, index=False, errors=ESCAPE)
        readme = README_TEMPLATE.format(
            format=FORMAT, version=__version__, model=ps.model_path.name, sha=ps.model_sha[:12], h=h, w=w,
            mean=format_channels(spec.mean), std=format_channels(spec.std), order=spec.channel_order, sets=", ".join(names), dim=spec.embedding_dim,
            batch=(f"{spec.batch_dim} at a time (the model file's fixed batch)" if isinstance(spec.batch_dim, int)
                   else "in batches of any size"),
            rows=len(rows), last=spec.embedding_dim - 1)
        manifest = {
            "format": FORMAT,
            "facequant": __version__,
            "model": {"path": str(ps.model_path), "sha256": ps.model_sha, "spec": ps.spec.to_dict(),
                      "normalized": str(ps.normalized)},  # facequant's dynamic-batch opset>=13 copy
            "input": {"layout": "NCHW", "dtype": "float32", "shape": [3, h, w], "channel_order": spec.channel_order,
                      "mean": spec.to_dict()["mean"], "std": spec.to_dict()["std"],  # per channel: a list
                      "formula": "(pixel - mean) / std",
                      "png": f"RGB uint8 {h}x{w}, before mean/std"},
            "output": {"embedding_dim": spec.embedding_dim, "what": "raw embeddings, before L2 normalisation"},
            # issue 12: why this preprocessing (scored on data) and what the graph does at its ends
            **(ps.check.run_entries() if ps.check is not None else {}),
            "camera": ps.camera.to_dict(),
            "distances_m": list(ps.distances),
            "config": ps.config.to_dict(),
            "tensors": tensors,
            "skipped_images": ps.skipped,
            "excluded_files": ps.dataset.excluded,
            "readme": readme,
        }
        write_json(manifest, staging / MANIFEST_JSON)
        (staging / README_TXT).write_text(readme)
        write_run_json({**(run or {}), "manifest": MANIFEST_JSON}, staging / RUN_JSON)
    return ExportSummary(out, len(ps.images), tuple(f"{n}.npy" for n in names), len(rows), n_not_simulated, (3, h, w))
