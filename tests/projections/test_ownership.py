"""Balanced ownership: each projector process claims about P/W partitions; a
new one takes its share at the next rebalance, a dead one's is taken over."""

import pytest

from projections import ownership
from projections.ownership import Claims

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True, databases=["default", "read"]),
]

PARTITIONS = [("products", p) for p in range(8)] + [("sellers", 0)]


def rebalanced(*workers: Claims) -> list[set]:
    for _ in range(3):  # each sees the others' moves at its next turn
        for worker in workers:
            worker.rebalance()
    return [set(worker.held) for worker in workers]


def test_workers_share_the_partitions_and_take_over_a_dead_ones():
    first, second, third = Claims(PARTITIONS), Claims(PARTITIONS), Claims(PARTITIONS)
    try:
        assert rebalanced(first) == [set(PARTITIONS)]

        held = rebalanced(first, second)
        assert sorted(len(h) for h in held) == [4, 5]
        assert held[0] | held[1] == set(PARTITIONS)
        assert not held[0] & held[1]

        held = rebalanced(first, second, third)
        assert all(len(h) == 3 for h in held)
        assert set().union(*held) == set(PARTITIONS)

        third.close()  # its connection ends: its presence and claims with it
        held = rebalanced(first, second)
        assert sorted(len(h) for h in held) == [4, 5]
        assert held[0] | held[1] == set(PARTITIONS)
    finally:
        for worker in (first, second, third):
            worker.close()


def test_owned_rebalances_only_when_it_is_time(monkeypatch):
    worker = Claims(PARTITIONS)
    try:
        assert worker.owned() == PARTITIONS
        calls = []
        monkeypatch.setattr(worker, "rebalance", lambda: calls.append(1))
        worker.owned()
        assert calls == []
        monkeypatch.setattr(ownership, "REBALANCE_SECONDS", 0.0)
        worker._next_rebalance = 0.0
        worker.owned()
        assert calls == [1]
    finally:
        worker.close()
