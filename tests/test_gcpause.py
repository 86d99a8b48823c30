"""The cyclic collector's pause: nested and concurrent pauses end with the collector as it was."""

from __future__ import annotations

import gc
import threading

from optiinfra.gcpause import no_cyclic_gc


def test_pauses_on_several_threads_end_with_the_collector_running_again() -> None:
    assert gc.isenabled()
    inside = threading.Barrier(3)
    release = threading.Event()
    seen: list[bool] = []

    def batch() -> None:
        with no_cyclic_gc():
            inside.wait()
            release.wait()
            seen.append(gc.isenabled())

    threads = [threading.Thread(target=batch) for _ in range(2)]
    for thread in threads:
        thread.start()
    inside.wait()  # both pauses have begun
    assert not gc.isenabled()
    release.set()
    for thread in threads:
        thread.join()
    assert seen == [False, False]  # each block ran paused, whichever ended first
    assert gc.isenabled()


def test_a_collector_disabled_before_stays_disabled_after() -> None:
    gc.disable()
    try:
        with no_cyclic_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
