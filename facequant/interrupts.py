"""Ctrl-C held back while a step that must not stop halfway runs (a results folder's swap, a
staging folder's removal), then raised: what is on disk is whole either way."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """SIGINT (Ctrl-C) held back until the block ends, then raised as KeyboardInterrupt: a
    step that must not stop halfway (a swap, a removal) completes first. Signals reach the main
    thread only: elsewhere (the TUI's worker) there is nothing to hold back."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, lambda signum, _frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
    if received and previous is not signal.SIG_IGN:
        if callable(previous):
            previous(signal.SIGINT, None)
        else:
            raise KeyboardInterrupt
