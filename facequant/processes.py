"""Whether a process still runs: how staging folders and temporary files of killed runs are
told from those of runs in progress."""

from __future__ import annotations

import os


def process_alive(pid: int) -> bool:
    """Whether a process of this host still runs (another user's counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    except (OverflowError, ValueError):  # no pid this large exists
        return False
    return True
