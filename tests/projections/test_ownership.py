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


def assert_divided(held: list[set], partitions: list) -> None:
    """Every partition claimed once, each projector's spread evenly."""
    assert set().union(*held) == set(partitions)
    assert sum(len(h) for h in held) == len(partitions)
    for name in {name for name, _ in partitions}:
        counts = [len({p for p in h if p[0] == name}) for h in held]
        assert max(counts) - min(counts) <= 1, (name, counts)


def test_workers_share_the_partitions_and_take_over_a_dead_ones():
    first, second, third = Claims(PARTITIONS), Claims(PARTITIONS), Claims(PARTITIONS)
    try:
        assert rebalanced(first) == [set(PARTITIONS)]

        held = rebalanced(first, second)
        assert sorted(len(h) for h in held) == [4, 5]
        assert_divided(held, PARTITIONS)

        held = rebalanced(first, second, third)
        assert sorted(len(h) for h in held) == [2, 3, 4]  # 3, 3, 2 products and the sellers
        assert_divided(held, PARTITIONS)

        third.close()  # its connection ends: its presence and claims with it
        held = rebalanced(first, second)
        assert sorted(len(h) for h in held) == [4, 5]
        assert_divided(held, PARTITIONS)
    finally:
        for worker in (first, second, third):
            worker.close()


def test_processes_of_different_projectors_divide_each_one_among_its_own():
    """A process that runs only the sellers' projector takes no share of the
    product partitions from one that runs only the products'."""
    products = [p for p in PARTITIONS if p[0] == "products"]
    only_products, only_sellers = Claims(products), Claims([("sellers", 0)])
    both = Claims(PARTITIONS)
    try:
        held = rebalanced(only_products, only_sellers)
        assert held == [set(products), {("sellers", 0)}]
        held = rebalanced(only_products, only_sellers, both)
        assert_divided([held[0], held[2]], products)
        assert {("sellers", 0)} in ({p for p in h if p[0] == "sellers"} for h in held[1:])
    finally:
        for worker in (only_products, only_sellers, both):
            worker.close()


def test_claims_lost_with_their_connection_are_taken_again(caplog):
    worker = Claims(PARTITIONS)
    try:
        assert worker.owned() == PARTITIONS
        worker._connection.close()  # as a dropped connection would
        worker._next_rebalance = 0.0
        assert worker.owned() == []  # lost: the others may take them meanwhile
        assert "claims lost" in caplog.text
        worker._next_rebalance = 0.0
        assert worker.owned() == PARTITIONS
    finally:
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


def test_a_resized_layout_is_divided_at_once():
    """After a split the runner hands its claims the new partitions
    (``Claims.follow``): they are claimed at the next look, not a second
    later, and a merge's vanished partitions are let go."""
    small = [("products", p) for p in range(2)] + [("sellers", 0)]
    worker = Claims(small)
    try:
        assert set(worker.owned()) == set(small)
        worker.follow(PARTITIONS)
        assert set(worker.owned()) == set(PARTITIONS)  # within the second
        worker.follow(small)
        assert set(worker.owned()) == set(small)
        assert worker.held == set(small)
    finally:
        worker.close()
