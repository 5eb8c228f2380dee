"""The service's batch-tree cache: bounded by bytes, one build per batch at a time."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable

import pytest
from anchorlog.ledger.batch import BatchTree
from anchorlog.ledger.errors import NotFound
from anchorlog.server.service import _BatchTreeCache


def _blob(tag: int, count: int) -> bytes:
    return b"".join(sorted(hashlib.sha256(bytes([tag]) + n.to_bytes(4, "big")).digest() for n in range(count)))


class Builds:
    """Counts builds of each batch; the weight is what the service estimates (3x the digests)."""

    def __init__(self) -> None:
        self.count: dict[int, int] = {}
        self._lock = threading.Lock()

    def builder(
        self, index: int, count: int = 10, gate: threading.Event | None = None
    ) -> Callable[[], tuple[BatchTree, int]]:
        def build() -> tuple[BatchTree, int]:
            with self._lock:
                self.count[index] = self.count.get(index, 0) + 1
            if gate is not None:
                gate.wait()
            blob = _blob(index, count)
            return BatchTree(blob), 3 * len(blob)

        return build


def test_cache_is_bounded_by_bytes_and_evicts_the_least_recent() -> None:
    weight = 3 * 32 * 10
    cache = _BatchTreeCache(2 * weight)
    builds = Builds()
    first = cache.get(1, builds.builder(1))
    cache.get(2, builds.builder(2))
    assert cache.get(1, builds.builder(1)) is first  # a hit, and 1 is now the most recent
    cache.get(3, builds.builder(3))  # evicts 2, the least recently used
    assert cache.cached_bytes == 2 * weight
    cache.get(1, builds.builder(1))
    cache.get(2, builds.builder(2))
    assert builds.count == {1: 1, 2: 2, 3: 1}
    assert cache.cached_bytes <= 2 * weight


def test_a_tree_larger_than_the_whole_budget_is_served_but_not_kept() -> None:
    cache = _BatchTreeCache(3 * 32 * 10)
    builds = Builds()
    small = cache.get(1, builds.builder(1, 10))
    big = cache.get(2, builds.builder(2, 100))
    assert big.size == 100
    assert cache.cached_bytes == 3 * 32 * 10
    assert cache.get(1, builds.builder(1)) is small
    cache.get(2, builds.builder(2, 100))
    assert builds.count == {1: 1, 2: 2}


def test_concurrent_queries_for_one_batch_build_its_tree_once() -> None:
    cache = _BatchTreeCache(1 << 20)
    builds = Builds()
    gate = threading.Event()
    arrived = threading.Semaphore(0)
    trees: list[BatchTree] = []

    def query() -> None:
        arrived.release()
        trees.append(cache.get(7, builds.builder(7, gate=gate)))

    threads = [threading.Thread(target=query) for _ in range(8)]
    for thread in threads:
        thread.start()
    for _ in threads:
        arrived.acquire()
    gate.set()
    for thread in threads:
        thread.join()
    assert builds.count == {7: 1}
    assert len(trees) == 8 and all(tree is trees[0] for tree in trees)


def test_a_failed_build_reaches_every_waiter_and_is_not_cached() -> None:
    cache = _BatchTreeCache(1 << 20)

    def missing() -> tuple[BatchTree, int]:
        raise NotFound("entry 5 has no batch")

    with pytest.raises(NotFound):
        cache.get(5, missing)
    builds = Builds()
    assert cache.get(5, builds.builder(5)).size == 10  # tried again, not remembered as missing
    assert cache.cached_bytes == 3 * 32 * 10
