"""Analyses built on sweeps: layer diagnostics, mixed-precision search, calibration studies, simulation fidelity, the recommendation per deployment scenario."""
