"""run.json's record of a sweep: what produced its numbers."""

from __future__ import annotations

from facequant.backends import cost
from facequant.backends.base import Backend
from facequant.backends.cpu import cpu_record
from facequant.evaluate import identification
from facequant.sweep.probes import ProbeSet
from facequant.sweep.result import SweepResult
from facequant.versions import versions


def run_record(ps: ProbeSet, backends: dict[str, Backend], result: SweepResult, profile: dict[str, object] | None,
              split: identification.Split | None, duplicates: list[dict[str, object]]) -> dict[str, object]:
    """run.json of a sweep: config, model, camera, threshold, data, calibration, backends,
    versions, timings, cost basis (the findings of what the data cannot support come after)."""
    config, distances = ps.config, ps.distances
    n_genuine = int(result.sweep["n_genuine"].iloc[0]) if len(result.sweep) else 0
    multi = [{"image": img.key, "faces": ps.faces[img.key].n_faces, "used": "most confident face"}
             for img in ps.images if ps.faces[img.key].n_faces > 1]
    ident: dict[str, object] = {"available": result.identification is not None}
    if split is not None:
        ident.update(split.to_dict(ps.keys))
    if result.identification is not None:
        ident["threshold"] = float(result.identification["threshold"].iloc[0])
        ident["threshold_set_on"] = ("given" if config.threshold is not None else
                                     f"fp32 non-mated probes at {distances[0]} m, target FPIR {config.target_fpir}")
    return {
        "config": config.to_dict(),
        "protocol": config.protocol,
        "model": {"path": str(ps.model_path), "sha256": ps.model_sha, "normalized": str(ps.normalized),
                  "spec": ps.spec.to_dict()},
        "camera": ps.camera.to_dict(),
        "distances_m": list(distances),
        "threshold": {"value": result.threshold, "set_on": "given" if config.threshold is not None else
                      f"fp32 impostors at {distances[0]} m, target FAR {config.target_far}"},
        "dataset": {"root": str(ps.dataset.root), "images": len(ps.dataset.images), "usable": len(ps.images),
                    "identities": len(ps.dataset.identities),
                    "comparisons_at_closest": n_genuine + (int(result.sweep["n_impostor"].iloc[0])
                                                           if len(result.sweep) else 0),
                    "genuine": n_genuine,
                    "impostor": int(result.sweep["n_impostor"].iloc[0]) if len(result.sweep) else 0,
                    "notes": ps.dataset.notes},
        "identification": ident,
        "skipped_images": ps.skipped,
        "excluded_files": ps.dataset.excluded,
        "multi_face_images": multi,
        "calibration": {"images": list(ps.calibration_faces), "source": config.calibration_data or "evaluation photos",
                        "distances_m": list(ps.calibration_distances()),
                        "method": config.calibration_method or "per recipe"},
        "backends": {name: b.describe() for name, b in backends.items()},
        "versions": versions(),
        "cpu": cpu_record({str(b.describe().get("runtime", "")) for b in backends.values()}),
        "timings": ps.timings,
        "degenerate": {r.backend: r.degenerate for r in result.cliff.itertuples() if r.degenerate},
        "cost": {"device_profile": profile and {k: profile[k] for k in ("path", "device", "source")},
                 "cpu_latency": cost.CPU_LATENCY_SOURCE, "timing": cost.timing_record()},
        "duplicates": duplicates,
        "warnings": [],
        **(ps.check.run_entries() if ps.check is not None else {}),  # preprocessing, graph, alignment
    }
