"""facequant's command line: it parses options into the configs of facequant.api, calls the
verb, and prints. One module per command group: sweep, analysis (study, diagnose,
search-precision, recommend), exports (export-probes, export-precision), tools (models,
cameras, validate-sim, tui); common holds what they share, main the entry point."""

from facequant.cli.main import DEBUG_ENV, build_parser, main

__all__ = ["DEBUG_ENV", "build_parser", "main"]
