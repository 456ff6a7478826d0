"""The encoder batching policy as a pure function of the waiting list and the clock."""

from __future__ import annotations

from dataclasses import dataclass

from hybridformer.deploy.serve.config import ServeConfig
from hybridformer.deploy.serve.policy import BatchPolicy


@dataclass
class Item:
    arrival: float
    length: int


def policy(**kw) -> BatchPolicy:
    cfg = ServeConfig(**kw)
    return BatchPolicy(cfg.max_batch_size, cfg.max_batch_tokens, cfg.max_wait_ms / 1e3, cfg.bucket_of)


def test_waits_from_the_oldest_arrival_then_runs_what_it_has():
    p = policy(max_batch_size=4, max_wait_ms=10)
    waiting = [Item(1.000, 5), Item(1.004, 6)]
    wait = p.next_batch(waiting, now=1.005)
    assert abs(wait - 0.005) < 1e-9  # 10 ms from the oldest, not from the newest
    assert p.next_batch(waiting, now=1.010) == waiting


def test_a_full_batch_runs_at_once():
    p = policy(max_batch_size=3, max_wait_ms=1000)
    waiting = [Item(1.0 + i / 100, 5) for i in range(5)]
    assert p.next_batch(waiting, now=1.05) == waiting[:3]


def test_token_budget_counts_padding_to_the_longest():
    p = policy(max_batch_size=32, max_batch_tokens=100, max_wait_ms=1000, length_buckets=[64])
    waiting = [Item(1.0, 10), Item(1.1, 40), Item(1.2, 10)]  # 2 x 40 = 80 fits, 3 x 40 = 120 does not
    assert p.next_batch(waiting, now=1.3) == waiting[:2]
    assert p.next_batch([Item(1.0, 500)], now=1.0) == [Item(1.0, 500)]  # one input always runs


def test_the_oldest_input_picks_the_bucket():
    p = policy(max_batch_size=8, max_wait_ms=0, length_buckets=[16, 64])
    short, long_, short2 = Item(1.0, 10), Item(1.1, 50), Item(1.2, 12)
    assert p.next_batch([short, long_, short2], now=2.0) == [short, short2]
    assert p.next_batch([long_], now=2.0) == [long_]
