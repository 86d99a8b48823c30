"""Pausing Python's cyclic garbage collector while a large batch is handled.

Validating and shaping a 5,000-record batch allocates tens of thousands of objects (dicts, models, tuples), none in a
reference cycle: reference counting frees them all. Each allocation burst still triggers the cyclic collector, whose
older generations walk every tracked object of the process (the whole application, not just the batch); in the API
process that was about a third of an ingest request's CPU (py-spy, 10,000,000 stored records). The pause covers one
batch; overlapping pauses on several threads are counted, and the collector runs again when the last ends.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_was_enabled = True


@contextmanager
def no_cyclic_gc() -> Iterator[None]:
    """Run the block with the cyclic collector paused (reference counting still frees every acyclic object)."""
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
