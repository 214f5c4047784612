"""Which backend to deploy: per deployment scenario, the cheapest backend that holds the
required match rate over the scenario's distance range, and why every other one lost.

A *scenario* (configs/scenarios/<name>.yaml, one file each) is a camera, a distance range, a
required TAR at the run's threshold, a FAR limit relative to the run's target FAR, and a cost
budget. recommend() reads a results directory's tables (sweep.csv, cliff.csv, cost.csv,
run.json; see facequant.results.directory.load_results) and, per scenario:

1. reads every backend's TAR and FAR at the scenario's distances: the sweep's distances inside
   the range plus the range's two ends. What matters physically is face pixels, so each
   distance becomes a face size with the *scenario's* camera and is read off the run's TAR
   vs face-px curve: measured where the sweep has that face size (always, when the cameras
   agree), else interpolated linearly in log face px between the two neighbouring rows;
   a face larger than the sweep's largest reads the largest's value when that is already at
   or above the model input size (the model sees the face resampled to its input either
   way). A distance the sweep does not reach otherwise is not evaluated, and said so;
2. rejects degenerate backends (cliff.csv `degenerate`), backends whose worst TAR in range
   is below the requirement, whose FAR exceeds the limit anywhere in range, or that are over
   budget, each with the number that failed;
3. recommends the cheapest of the rest: device latency when every backend has a device
   figure, else CPU latency (a proxy: figures within ``latency_tolerance`` of each other count
   as a tie, since CPU timing of the same model moves by more than that between runs), then
   smaller file, then fewer 16-bit/float layers;
4. when none qualifies, names the closest: the smallest worst TAR shortfall among healthy
   backends within FAR and budget (among all healthy ones if none is).

A scenario range the sweep only partly reaches is evaluated over what it reaches, and the
verdict says which distances were left out (ScenarioVerdict.coverage, a note, and a tag on the
recommended row): the near end is routinely outside a sweep and harmless there, while
refusing would make a short sweep useless. A scenario the sweep does not reach at all is an
error when asked for by name, and skipped (Recommendation.skipped) when evaluating them all.

Scenarios are one file each, not one file of all: a site adds its own by dropping a file in
(or passing its path), an error names the file of the scenario at fault, and the file name is
the scenario's name, so the two cannot disagree.

evaluate_scenario, recommend and cost_order are pure functions of the tables (no printing, no
files but the scenario YAML when none is given); recommend_dir reads a results directory and
writes recommend.csv, the only file it writes; render builds rich tables without printing
them. The CLI and a TUI call the same API.

The package, by step: scenarios (the YAML files), tables (what a results directory says:
curves, costs, cost order), evaluate (one scenario), directory (many scenarios, recommend.csv),
verdicts (the result types and recommend.csv's columns), render (rich tables), wording.
"""

from facequant.analysis.recommend.directory import (
    RecommendConfig,
    load_search,
    recommend,
    recommend_dir,
    with_device_profile,
    write_recommendation,
)
from facequant.analysis.recommend.evaluate import evaluate_scenario
from facequant.analysis.recommend.render import render
from facequant.analysis.recommend.scenarios import (
    Scenario,
    get_scenario,
    load_scenario_file,
    load_scenarios,
    scenarios_dir,
)
from facequant.analysis.recommend.tables import cost_order
from facequant.analysis.recommend.verdicts import (
    COSTLIER,
    DEFAULT_LATENCY_TOLERANCE,
    RECOMMEND_COLUMNS,
    RECOMMEND_CSV,
    RECOMMEND_EXTRA_COLUMNS,
    RECOMMENDED,
    REJECTED,
    SEARCH_JSON,
    BackendVerdict,
    NotCoveredError,
    Point,
    Recommendation,
    ScenarioVerdict,
)

__all__ = [
    "COSTLIER", "DEFAULT_LATENCY_TOLERANCE", "RECOMMEND_COLUMNS", "RECOMMEND_CSV", "RECOMMEND_EXTRA_COLUMNS",
    "RECOMMENDED", "REJECTED", "RecommendConfig", "SEARCH_JSON", "BackendVerdict", "NotCoveredError", "Point", "Recommendation",
    "Scenario", "ScenarioVerdict", "cost_order", "evaluate_scenario", "get_scenario", "load_scenario_file",
    "load_scenarios", "load_search", "recommend", "recommend_dir", "render", "scenarios_dir", "with_device_profile",
    "write_recommendation",
]
