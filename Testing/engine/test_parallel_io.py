"""map_files: results in the items' order, the first failing item's error, work really spread over threads."""

import os
import threading
import time

import pytest

from DiffSegExtension.parallel_io import map_files


def test_results_keep_the_items_order():
    def slow_for_small(n):
        time.sleep(0.02 * (5 - n))
        return n * n

    assert map_files(slow_for_small, range(5)) == [0, 1, 4, 9, 16]


def test_the_first_failing_item_raises():
    def check(n):
        if n in (2, 3):
            raise ValueError(f"item {n}")
        return n

    with pytest.raises(ValueError, match="item 2"):
        map_files(check, range(5))


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one thread per core: needs two cores")
def test_items_run_in_threads_of_their_own():
    threads = map_files(lambda _: (time.sleep(0.05), threading.get_ident())[1], range(2))
    assert len(set(threads)) == 2 and threading.get_ident() not in threads
