"""What `facequant models check` prints for the three shared models, on a fresh cache (so its
cost line is the first check's), written to docs/bring-your-own-model.md with the commands,
versions, date and load.

    python benchmarks/models_check.py          # prints the block (~2 min)
    python benchmarks/models_check.py --write  # and replaces it in docs/bring-your-own-model.md
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from docs_table import Measurement, add_arguments

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ("facequant models check faceplugin",
            "facequant models check ../shared/models/human-mobileface/mobileface.onnx",
            "facequant models check ../shared/models/hse-faceres/faceres.onnx")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args()
    m = Measurement("models_check.py", COMMANDS)
    lines = ["```text"]
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "FACEQUANT_CACHE": cache, "COLUMNS": "120"}
        for i, command in enumerate(COMMANDS):
            done = subprocess.run([sys.executable, "-m", "facequant.cli", *shlex.split(command)[1:]], cwd=ROOT, env=env,
                                  check=True, capture_output=True, text=True)
            lines += ([""] if i else []) + [f"$ {command}", *done.stdout.rstrip().splitlines()]
    lines.append("```")
    m.write("bring-your-own-model.md", "models check", lines, write=args.write,
            note="celebs13, a fresh cache (each check's cost is its first), run from the checkout")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
