"""`python -m facequant.cli`."""

import sys

from facequant.cli.main import main

if __name__ == "__main__":  # imported (a test walking every module), it does nothing
    sys.exit(main())
