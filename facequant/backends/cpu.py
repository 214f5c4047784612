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
