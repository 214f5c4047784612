"""Stage 5, evaluation: the sweep engine, metrics (TAR/FAR, thresholds) and the cliff."""
