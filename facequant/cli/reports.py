"""`facequant report` and `facequant compare`: pages and tables a team reads."""

from __future__ import annotations

import argparse
from pathlib import Path

from facequant import options
from facequant.cli import common
from facequant.config import RUN, WHAT, Option


def register(sub: argparse._SubParsersAction) -> None:
    p = common.command(sub, "report", (), help="remake report.html of a results directory",
                       description="Write report.html into a results directory from its files: the verdict per "
                                   "backend with intervals, the recommendation per scenario, the warnings, the "
                                   "cliff table, the plots, layer diagnostics (DIR/diagnostics) and the run's "
                                   "provenance, in one self-contained file. A sweep writes it already; remake it after "
                                   "`facequant recommend` or `facequant diagnose --out DIR/diagnostics`.",
                       epilog="example:\n  facequant report runs/first\n")
    p.add_argument("results", type=options.text, help="a sweep's results directory")
    p.set_defaults(func=cmd_report)

    own = (Option("out", "results directory for the comparison (default runs/compare-<A>-<B>-<time>)", RUN,
                  type=options.out_dir),
           Option("force", "replace an existing --out folder, only one facequant wrote", RUN, flag=True),
           Option("config", "YAML file with any of these options (keys as the long option names, '-' or '_')", WHAT,
                  type=Path))
    p = common.command(sub, "compare", own, help="compare two results directories: distances, verdicts, TAR",
                       description="Per backend present in both runs: the shift of reliable and cliff distance with "
                                   "95 % intervals (paired over the same people when both ran the same probes, "
                                   "said when not), the verdict against fp32 in each, and TAR per distance. Says "
                                   "when the runs are not comparable (other photos or pairs, camera, distances) and "
                                   "what differs in their provenance. Writes compare.csv, compare_tar.csv, "
                                   "compare.png, compare.json and report.html to --out.",
                       epilog="example:\n  facequant compare runs/minmax runs/entropy --out runs/minmax-vs-entropy\n")
    p.add_argument("a", type=options.text, help="the first (baseline) results directory")
    p.add_argument("b", type=options.text, help="the second results directory")
    p.set_defaults(func=cmd_compare)


def cmd_report(args: argparse.Namespace) -> int:
    from facequant import api

    path = api.report(str(args.results))
    print(f"written {path}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from facequant import api
    from facequant.cli.show import show
    from facequant.render.compare import render_comparison

    values = common.values(args)
    output = common.output(values, f"compare-{Path(str(args.a)).name}-{Path(str(args.b)).name}")
    result = api.compare(str(args.a), str(args.b), output)
    show(render_comparison(result, output.dir))
    return 0
