"""The sweep, orchestrated: its config, probe preparation (datasets -> faces -> simulated
crops), the engine, executors and caches. The metrics it folds results with are pure
functions in facequant.evaluate."""
