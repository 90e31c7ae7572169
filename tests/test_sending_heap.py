"""The collector settings a send pass changes are the process's: two passes at once in two
threads (serve's reply sender and a command) must leave them as they found them."""

from __future__ import annotations

import gc
import threading

from outreach.sending.engine import YOUNG_GC_THRESHOLD, _heap_frozen


def test_overlapping_passes_in_two_threads_put_the_collector_back() -> None:
    before = gc.get_threshold()
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, tuple[int, int, int]] = {}

    def first() -> None:
        with _heap_frozen():
            a_in.set()
            b_in.wait(5)
        a_out.set()

    def second() -> None:
        a_in.wait(5)
        with _heap_frozen():
            b_in.set()
            a_out.wait(5)
            # the first pass has ended: this one still sends with its settings
            seen["during"] = gc.get_threshold()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert seen["during"][0] == max(YOUNG_GC_THRESHOLD, before[0])
        assert gc.get_threshold() == before
        assert gc.get_freeze_count() == 0
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
