"""One scenario: read every backend's TAR and FAR at the scenario's distances, reject with the
number that failed, recommend the cheapest of the rest, or name the closest."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from facequant.analysis.recommend.scenarios import Scenario
from facequant.analysis.recommend.tables import (
    Curve,
    cost_order,
    cost_rows,
    costlier_reason,
    degenerate_reasons,
    rank_backends,
    read_curves,
    run_camera,
    run_settings,
    tie_note,
)
from facequant.analysis.recommend.verdicts import (
    COSTLIER,
    DEFAULT_LATENCY_TOLERANCE,
    NOT_RESOLVED,
    RATE_EPS,
    RECOMMENDED,
    REJECTED,
    SEARCH_JSON,
    BackendVerdict,
    NotCoveredError,
    Point,
    ScenarioVerdict,
)
from facequant.analysis.recommend.wording import (
    megabytes,
    metres,
    protocol_words,
    rate_vs,
    significant_vs,
)
from facequant.evaluate.honesty import min_resolvable_far

# ---------------------------------------------------------------- one scenario


def _evaluation_distances(sweep: pd.DataFrame, scenario: Scenario) -> list[float]:
    """The sweep's distances inside the range, plus both ends of the range (the far end is
    the hardest point and must be checked even between two swept distances)."""
    grid = sorted({float(d) for d in sweep.distance_m.astype(float)})
    inside = [d for d in grid if scenario.near_m - RATE_EPS <= d <= scenario.far_m + RATE_EPS]
    points = sorted({round(d, 9) for d in [scenario.near_m, *inside, scenario.far_m]})
    return points


@dataclass
class _Check:
    """One backend against one scenario, before the cost order decides between those that pass."""

    points: tuple[Point, ...]
    worst: Point
    shortfall: float
    worst_far: float
    holds_to: float | None  # the last distance of the unbroken run from the near end that meets TAR
    failures: list[str]
    tar_fails: bool
    other_fails: bool  # FAR or budget (degenerate is kept apart)
    unresolved: list[str]  # what the data cannot tell (FAR over the limit within its noise)
    notes: list[str]  # what passed only within noise (a latency budget)


def _read_points(curves: Mapping[str, Curve], scenario: Scenario, distances: Sequence[float], iod: float,
                 model_px: float, per_backend_px: Mapping[str, float] | None = None,
                 ) -> tuple[dict[str, list[Point]], list[float], list[float]]:
    """Every backend's reading at each distance a scenario wants; a distance is evaluated
    only when every backend can be read there, so all are judged on the same points.
    per_backend_px: each candidate's model input size where they differ (several models)."""
    px_of = dict(per_backend_px or {})
    readings: dict[str, list[Point]] = {b: [] for b in curves}
    evaluated: list[float] = []
    uncovered: list[float] = []
    for d in distances:
        px = scenario.camera.face_px(d, iod)
        values = {b: c.at(d, px, px_of.get(b, model_px)) for b, c in curves.items()}
        if any(v is None for v in values.values()):
            uncovered.append(d)
            continue
        evaluated.append(d)
        for b, v in values.items():
            assert v is not None
            readings[b].append(v)
    return readings, evaluated, uncovered


def _check(points: Sequence[Point], scenario: Scenario, far_limit: float, cost: Mapping[str, Any],
           degenerate: str | None, show_px: bool) -> _Check:
    # Worst point: the lowest TAR; among equals the farthest (the harder distance).
    worst = min(points, key=lambda p: (p.tar, -p.distance_m))
    failures: list[str] = []
    if degenerate:
        failures.append(f"degenerate: {degenerate}")
    failing = [p for p in points if p.tar < scenario.required_tar - RATE_EPS]
    if failing:
        value, diff = rate_vs(worst.tar, scenario.required_tar)
        px = f" ({worst.face_px:.0f} px)" if show_px else ""
        text = f"TAR {value} at {metres(worst.distance_m)} m{px} < {scenario.required_tar:g} ({diff})"
        others = [p for p in failing if p is not worst]
        if others:
            text += f", also fails at {', '.join(metres(p.distance_m) for p in others)} m"
        failures.append(text)
    n_tar = len(failures)
    fars = [p for p in points if math.isfinite(p.far)]
    over_far = [p for p in fars if p.far > far_limit * (1 + RATE_EPS)]
    unresolved: list[str] = []
    if over_far:
        p = max(over_far, key=lambda p: (p.far, -p.distance_m))
        more = "" if len(over_far) == 1 else f" (and {len(over_far) - 1} more distance(s))"
        text = f"FAR {significant_vs(p.far, far_limit)} > {far_limit:g} at {metres(p.distance_m)} m{more}"
        why = _far_unresolved(p, far_limit)
        (unresolved if why else failures).append(f"{text}, {why}" if why else text)
    notes: list[str] = []
    basis = f" ({cost['basis']})" if cost["basis"] else ""
    limit = scenario.max_latency_vs_fp32
    if limit is not None and math.isfinite(cost["ratio"]) and cost["ratio"] > limit + RATE_EPS:
        low = cost.get("ratio_low", math.nan)
        if math.isfinite(low) and low <= limit + RATE_EPS:  # one noisy timing must not decide it
            notes.append(f"latency {cost['ratio']:.2f}x fp32{basis} is over the {limit:g}x budget only within the "
                         f"spread of interleaved rounds [{low:.2f}, {cost.get('ratio_high', math.nan):.2f}]: "
                         "counted as within budget")
        else:
            failures.append(f"over budget: {cost['ratio']:.2f}x fp32{basis} > {limit:g}x")
    if scenario.max_latency_ms is not None:
        if not math.isfinite(cost["device_ms"]):
            failures.append(f"no device latency to check the {scenario.max_latency_ms:g} ms budget "
                            "(sweep with --device-profile, or recommend --device-profile)")
        elif cost["device_ms"] > scenario.max_latency_ms + RATE_EPS:
            failures.append(f"over budget: {cost['device_ms']:.3g} ms on device > {scenario.max_latency_ms:g} ms")
    holds_to = None
    for p in points:
        if p.tar < scenario.required_tar - RATE_EPS:
            break
        holds_to = p.distance_m
    return _Check(points=tuple(points), worst=worst, shortfall=scenario.required_tar - worst.tar,
                  worst_far=max((p.far for p in fars), default=math.nan), holds_to=holds_to,
                  failures=failures, tar_fails=bool(failing), other_fails=len(failures) > n_tar,
                  unresolved=unresolved, notes=notes)


def _far_unresolved(p: Point, limit: float) -> str:
    """Why a FAR above the limit is no rejection, or "": the impostors (non-mated probes) behind
    it cannot resolve the limit at all (rule of three), or its 95 % interval reaches below it."""
    n = p.n_impostor
    if not math.isfinite(n) or n <= 0:
        return ""  # an older sweep.csv: no count to judge by
    floor = min_resolvable_far(int(round(n)))
    if floor > limit:
        return f"but {n:.0f} impostors resolve FAR only down to ~{floor:.2g}: not resolvable"
    if math.isfinite(p.far_ci_low) and p.far_ci_low <= limit:
        return (f"but {n:.0f} impostors cannot tell (95 % interval {p.far_ci_low:.2g}-{p.far_ci_high:.2g} holds "
                f"{limit:g}): not resolvable")
    return ""


def evaluate_scenario(results: Mapping[str, Any], scenario: Scenario,
                      latency_tolerance: float = DEFAULT_LATENCY_TOLERANCE, latency: str = "auto") -> ScenarioVerdict:
    """The verdict on every backend of a results table (load_results' dict: sweep, cliff,
    cost, run, and optionally search) for one scenario. Pure. Raises NotCoveredError when the
    sweep reaches no distance of the scenario. latency: tables.LATENCY_CHOICES."""
    # The run's protocol: verification's TAR/FAR, or identification's TPIR/FPIR (load_results' "rates").
    sweep: pd.DataFrame = results.get("rates", results["sweep"])
    run: Mapping[str, Any] = results.get("run") or {}
    folder = f"{results['path']}/" if results.get("path") else ""
    target_far, iod, model_px = run_settings(run, f"{folder}run.json")
    run_cam = run_camera(run, f"{folder}run.json")
    curves = read_curves(sweep, f"{folder}sweep.csv")
    backends = list(curves)
    far_limit = scenario.max_far_vs_target * target_far

    same_camera = math.isclose(scenario.camera.focal, run_cam.focal, rel_tol=1e-6)
    if same_camera:
        tar_basis = f"sweep rows (scenario camera {scenario.camera.name} = run's {run_cam.name})"
    else:
        tar_basis = (f"face px: scenario camera {scenario.camera.name} (focal {scenario.camera.focal:.0f} px) "
                     f"read on the run's {run_cam.name} (focal {run_cam.focal:.0f} px), log-px interpolation")
    readings, evaluated, uncovered = _read_points(curves, scenario, _evaluation_distances(sweep, scenario),
                                                  iod, model_px, results.get("model_px"))
    span = (f"the sweep spans {math.exp(min(c.log_px[0] for c in curves.values())):.0f}-"
            f"{math.exp(max(c.log_px[-1] for c in curves.values())):.0f} px faces")
    if not evaluated:
        raise NotCoveredError(
            f"scenario '{scenario.name}' ({metres(scenario.near_m)}-{metres(scenario.far_m)} m on {scenario.camera.name}: "
            f"{scenario.camera.face_px(scenario.far_m, iod):.0f}-{scenario.camera.face_px(scenario.near_m, iod):.0f} px) "
            f"lies outside the sweep ({span}); sweep those distances first")
    coverage = ""
    if uncovered:
        coverage = (f"evaluated {metres(evaluated[0])}-{metres(evaluated[-1])} m only: "
                    f"{', '.join(metres(d) for d in uncovered)} m not covered ({span})")

    costs = cost_rows(results.get("cost"), backends, latency)
    degenerate = degenerate_reasons(results.get("cliff"))
    checked = {b: _check(readings[b], scenario, far_limit, costs[b], degenerate.get(b), not same_camera)
               for b in backends}

    meeting = [b for b in backends if not checked[b].failures and not checked[b].unresolved]
    ranking = rank_backends(meeting, costs, latency_tolerance, latency)
    order, cost_basis = ranking.order, ranking.basis
    recommended = order[0] if order else None
    closest: str | None = None
    if recommended is None:
        # Closest: smallest worst TAR shortfall, among healthy backends within FAR and budget
        # when there are any (a suggestion should be deployable), else among all healthy ones.
        healthy = [b for b in backends if b not in degenerate and checked[b].failures]  # not-resolvable ones fail nothing
        pool = [b for b in healthy if not checked[b].other_fails] or healthy
        if pool:
            pool_order, cost_basis = cost_order(pool, costs, latency_tolerance, latency)
            ranks = {b: i for i, b in enumerate(pool_order)}
            closest = min(pool, key=lambda b: (max(checked[b].shortfall, 0.0), ranks[b]))

    def make(b: str, verdict: str, reason: str) -> BackendVerdict:
        ch, c = checked[b], costs[b]
        return BackendVerdict(
            backend=b, verdict=verdict, reason=reason, worst_tar=ch.worst.tar,
            worst_distance_m=ch.worst.distance_m, shortfall=ch.shortfall, worst_far=ch.worst_far,
            latency_vs_fp32=c["ratio"], latency_basis=c["basis"], file_bytes=c["file_bytes"],
            failures=tuple(ch.failures), closest=b == closest, points=ch.points)

    verdicts: list[BackendVerdict] = []
    if recommended is not None:
        ch, c = checked[recommended], costs[recommended]
        lat = (f"{c['ratio']:.2f}x fp32" + (f" ({c['basis']})" if c["basis"] else "")
               if math.isfinite(c["ratio"]) else "latency unknown")
        text = (f"cheapest that meets: worst TAR {ch.worst.tar:.3f} at {metres(ch.worst.distance_m)} m "
                f"(>= {scenario.required_tar:g}), max FAR {ch.worst_far:.2g} (<= {far_limit:g}), "
                f"{lat}, {megabytes(c['file_bytes'])}")
        if coverage:
            text += f" [{coverage.split(':')[0]}]"
        verdicts.append(make(recommended, RECOMMENDED, text))
        for b in order[1:]:
            verdicts.append(make(b, COSTLIER, costlier_reason(b, ranking, costs)))
    for b in backends:  # within everything else, their FAR above the limit only as far as the data can tell
        if checked[b].unresolved and not checked[b].failures:
            verdicts.append(make(b, NOT_RESOLVED, "meets the rest; " + "; ".join(checked[b].unresolved)))
    # Rejected: the closest first, then healthy before degenerate, within FAR and budget
    # before not, smaller shortfall first.
    rejected = sorted((b for b in backends if checked[b].failures), key=lambda b: (
        b != closest, b in degenerate, checked[b].other_fails, max(checked[b].shortfall, 0.0), b))
    for b in rejected:
        reason = "; ".join([*checked[b].failures, *checked[b].unresolved])
        if b == closest:
            holds = checked[b].holds_to
            reach = f"meets TAR up to {metres(holds)} m" if holds is not None else "meets TAR nowhere in range"
            reason = f"closest ({reach}): {reason}"
        verdicts.append(make(b, REJECTED, reason))

    notes: list[str] = [coverage] if coverage else []
    no_latency = [b for b in backends if not math.isfinite(costs[b]["ratio"])]
    if scenario.max_latency_vs_fp32 is not None and latency == "off":
        notes.append(f"--latency off: the {scenario.max_latency_vs_fp32:g}x fp32 budget is not checked")
    elif scenario.max_latency_vs_fp32 is not None and no_latency:
        notes.append(f"no latency_vs_fp32 for {', '.join(no_latency)}: budget not checked for "
                     f"{'it' if len(no_latency) == 1 else 'them'}")
    recipe = _recipe(results.get("search"))
    if recommended is not None:
        summary = f"{scenario.name}: {recommended} - {verdicts[0].reason}"
    else:
        summary, more = _no_winner(scenario, closest, checked, degenerate, verdicts, recipe)
        notes.extend(more)
    close = _close_call(scenario, recommended or closest, checked, degenerate)
    if close:
        notes.append(close)
    if recommended is not None:
        notes.extend(n for n in [tie_note(ranking, costs), *checked[recommended].notes] if n)
    # Identification reads TPIR / FPIR under the same columns: said in its own words.
    ident = run.get("protocol") == "identification" and "rates" in results and results["rates"] is not results["sweep"]

    def say(text: str) -> str:
        return protocol_words(text, ident)

    verdicts = [replace(v, reason=say(v.reason), failures=tuple(say(f) for f in v.failures)) for v in verdicts]
    return ScenarioVerdict(
        scenario=scenario, recommended=recommended, closest=closest, backends=tuple(verdicts), summary=say(summary),
        tar_basis=say(tar_basis), evaluated_m=tuple(evaluated), coverage=coverage, cost_basis=cost_basis,
        far_limit=far_limit, notes=tuple(say(n) for n in notes), recipe=recipe if recommended is None else None,
        words=("TPIR", "FPIR") if ident else ("TAR", "FAR"))


def _no_winner(scenario: Scenario, closest: str | None, checked: Mapping[str, _Check],
               degenerate: Mapping[str, str], verdicts: Sequence[BackendVerdict],
               recipe: str | None) -> tuple[str, list[str]]:
    """The summary line and notes when no backend qualifies."""
    head = f"{scenario.name}: no backend meets {scenario.requirement().split('; camera')[0]}"
    unresolved = [v.backend for v in verdicts if v.verdict == NOT_RESOLVED]
    if unresolved:
        head += (f"; not resolvable: {', '.join(unresolved)} meet{'s' if len(unresolved) == 1 else ''} the rest, "
                 "but the data cannot tell whether their FAR is within the limit")
    if closest is not None:
        ch = checked[closest]
        reach = f"; meets TAR up to {metres(ch.holds_to)} m" if ch.holds_to is not None else ""
        summary = f"{head}; closest: {closest} ({'; '.join(ch.failures)}{reach})"
    elif unresolved:
        summary = head
    else:
        summary = f"{head}; every backend is degenerate"
    notes: list[str] = []
    fp32 = checked.get("fp32")
    if fp32 is not None and fp32.tar_fails and "fp32" not in degenerate:
        notes.append(f"fp32 fails too (TAR {fp32.worst.tar:.2f} at {metres(fp32.worst.distance_m)} m): the limit is "
                     "the camera's resolution at this range, not quantization; a longer lens or more pixels "
                     "helps, another backend does not")
    for b, ch in checked.items():
        if b not in degenerate and not ch.tar_fails and ch.other_fails:
            notes.append(f"{b} meets TAR but fails: " + "; ".join(ch.failures))
    if recipe:
        if recipe in checked:
            v = next(v for v in verdicts if v.backend == recipe)
            notes.append(f"diagnostics' mixed-precision recipe {recipe} ({SEARCH_JSON}) was swept: {v.reason}")
        else:
            notes.append(f"diagnostics found a mixed-precision recipe ({SEARCH_JSON}): {recipe}; sweep it "
                         f"(facequant sweep --backends fp32,{recipe}) and run recommend again")
    return summary, notes


def _close_call(scenario: Scenario, chosen: str | None, checked: Mapping[str, _Check],
                degenerate: Mapping[str, str]) -> str:
    """A note when the required TAR lies inside the 95 % interval of the chosen backend's worst
    point, or of a backend rejected on TAR alone: the sweep's photos cannot separate them."""
    def straddles(b: str) -> bool:
        w = checked[b].worst
        return w.tar_ci_low <= scenario.required_tar <= w.tar_ci_high

    if chosen is None or not straddles(chosen):
        return ""
    w = checked[chosen].worst
    rivals = [b for b, ch in checked.items() if b != chosen and b not in degenerate and ch.tar_fails
              and not ch.other_fails and straddles(b)]
    text = (f"not resolved by these photos: {chosen}'s worst TAR {w.tar:.3f} at {metres(w.distance_m)} m has a "
            f"95 % interval {w.tar_ci_low:.3f}-{w.tar_ci_high:.3f} that contains the required "
            f"{scenario.required_tar:g}")
    if rivals:
        text += f"; so do those of {', '.join(rivals)}, rejected on TAR alone: the choice between them is noise"
    return text


def _recipe(search: object) -> str | None:
    if not isinstance(search, Mapping) or not search.get("recipe"):
        return None
    recipe = search["recipe"]
    return recipe if isinstance(recipe, str) else json.dumps(recipe, sort_keys=True)


