"""Results directories: writing and reading them, plots, the summary, and exports."""
