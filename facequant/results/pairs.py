"""A multi-model results directory read as (model, backend) pairs.

On disk the tables are tidy: a model column and a backend column. To choose among models,
the recommendation and the TUI need each (model, backend) pair as one candidate; this view
names it "model/backend" in the backend column (the model column stays), so they choose
among pairs with no code of their own for it. Pure pandas: no reading, no writing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

#: Between a model's label and a backend's name in a pair's name.
PAIR_SEP = "/"


def pair_name(model: object, backend: object) -> str:
    return f"{model}{PAIR_SEP}{backend}"


def is_multi_model(run: Mapping[str, Any]) -> bool:
    return bool(run.get("multi_model")) and isinstance(run.get("models"), list)


def paired(table: pd.DataFrame | None) -> pd.DataFrame | None:
    """The table with each backend named by its pair, model/backend (None stays None)."""
    if table is None or "model" not in table.columns or "backend" not in table.columns:
        return table
    out = table.copy()
    out["backend"] = [pair_name(m, b) for m, b in zip(out["model"], out["backend"], strict=True)]
    return out


def pairs_view(loaded: Mapping[str, Any]) -> dict[str, Any]:
    """load_results' dict of a multi-model directory (its sweep, identification and rates
    already paired: the rates view joins them on backend) with cliff and cost keyed by pair
    too, and each pair's model input size ("model_px", which the recommendation reads
    instead of run.json's single model). cost.csv's latency_vs_fp32 stays each model's own (what
    quantizing that model costs: a scenario's budget); pairs are ranked on absolute
    latency, which compares across models."""
    run = loaded["run"]
    models = [m for m in run.get("models", []) if isinstance(m, Mapping)]
    view = dict(loaded)
    view["cliff"] = paired(loaded.get("cliff"))
    view["cost"] = paired(loaded.get("cost"))
    px: dict[str, float] = {}
    sweep = view["sweep"]
    for m in models:
        size = m.get("input_size")
        if isinstance(size, list) and size and all(isinstance(v, int | float) for v in size):
            for backend in sweep.loc[sweep["model"] == m.get("label"), "backend"].unique():
                px[str(backend)] = float(min(size))
    view["model_px"] = px
    return view
