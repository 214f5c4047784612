"""The CPU features that change what a backend computes, not only how fast: VNNI (ORT's and
OpenVINO's INT8 kernels), AVX512-BF16 and AMX (OpenVINO runs bf16 where the CPU has it).
Recorded in run.json beside the results they shaped."""

from __future__ import annotations

import platform
from functools import lru_cache
from pathlib import Path

#: /proc/cpuinfo flags that select different INT8 / bf16 kernels (and so different numbers).
RESULT_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
                "amx_tile", "amx_int8", "amx_bf16")


@lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset[str]]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "", frozenset()
    model, flags = "", frozenset[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not model:
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = frozenset(value.split())
    return model, flags


def cpu_flags() -> frozenset[str]:
    return _cpuinfo()[1]


def result_flags() -> frozenset[str]:
    return frozenset(RESULT_FLAGS) & cpu_flags()


def has_bf16() -> bool:
    """The CPU computes bf16 natively (AVX512-BF16 or AMX-BF16)."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def cpu_features() -> dict[str, object]:
    """What run.json records: the CPU, and which result-changing features it has (None when
    /proc/cpuinfo is not there to say)."""
    model, flags = _cpuinfo()
    out: dict[str, object] = {"model": model, "machine": platform.machine()}
    if flags:
        out["features"] = {f: f in flags for f in RESULT_FLAGS}
        out["source"] = "/proc/cpuinfo"
    else:
        out["features"] = None
        out["source"] = "unavailable (no /proc/cpuinfo)"
    return out


def openvino_cpu_properties() -> dict[str, object]:
    """What OpenVINO's CPU plugin says about this CPU: its capabilities (BF16, INT8 ...) and
    the precision it would pick by default, which is why facequant always sets one."""
    import openvino

    core = openvino.Core()
    out: dict[str, object] = {"openvino": str(openvino.__version__)}
    for key, label in (("FULL_DEVICE_NAME", "device"), ("OPTIMIZATION_CAPABILITIES", "capabilities"),
                       ("INFERENCE_PRECISION_HINT", "default_inference_precision")):
        try:
            value = core.get_property("CPU", key)
        except Exception:  # noqa: BLE001 - a property this release lacks is just not recorded
            continue
        if hasattr(value, "to_string"):
            value = value.to_string()
        out[label] = [str(v) for v in value] if isinstance(value, list | tuple) else str(value)
    return out


def cpu_record(runtimes: set[str]) -> dict[str, object]:
    """run.json's "cpu": the features, and OpenVINO's view of the CPU when it ran a backend."""
    out = cpu_features()
    if "openvino" in runtimes:
        out["openvino_cpu_plugin"] = openvino_cpu_properties()
    return out
