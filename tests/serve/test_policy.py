"""The encoder batching policy as a pure function of the waiting list and the clock."""

from __future__ import annotations

import math
from dataclasses import dataclass

from hybridformer.serve.config import ServeConfig
from hybridformer.serve.policy import BatchPolicy, LastForward


@dataclass
class Item:
    arrival: float
    length: int


def policy(**kw) -> BatchPolicy:
    cfg = ServeConfig(**{"batch_wait": "first-arrival", **kw})
    return BatchPolicy(cfg.max_batch_size, cfg.max_batch_tokens, cfg.max_wait_ms / 1e3, cfg.bucket_of, cfg.batch_wait)


def close(a: float, b: float) -> bool:
    return abs(a - b) < 1e-9


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


def test_model_free_waits_from_the_end_of_a_busy_forward():
    p = policy(max_batch_size=4, max_wait_ms=10, batch_wait="model-free")
    waiting = [Item(1.000, 5), Item(1.004, 6)]  # queued while a forward of 3 ran until 1.050
    last = LastForward(end=1.050, size=3, waiting=2)
    # first-arrival would run these two at once (1.000 + 10 ms is long past); model-free gathers
    # until 1.060 for the 3 clients just answered.
    assert policy(max_batch_size=4, max_wait_ms=10).next_batch(waiting, 1.050, last) == waiting
    assert close(p.next_batch(waiting, 1.050, last), 0.010)
    assert close(p.next_batch(waiting + [Item(1.052, 5)], 1.052, last), 0.008)
    assert p.next_batch(waiting + [Item(1.052, 5), Item(1.053, 7)], 1.053, last) == waiting + [
        Item(1.052, 5), Item(1.053, 7)]  # full: at once
    assert p.next_batch(waiting, 1.060, last) == waiting  # the wait is over: what it has


def test_idle_aware_and_model_free_run_at_once_on_an_idle_model():
    lone = [Item(2.0, 5)]
    for rule in ("idle-aware", "model-free"):
        p = policy(max_batch_size=4, max_wait_ms=10, batch_wait=rule)
        assert p.next_batch(lone, 2.0, None) == lone  # nothing ran yet
        assert p.next_batch(lone, 2.0, LastForward(end=1.999, size=1, waiting=0)) == lone  # c1: no company
        # A second request arriving during a lone forward is company: the next batch gathers.
        assert close(p.next_batch(lone, 2.0, LastForward(end=2.0, size=1, waiting=1)), 0.010)
    # The rule makes the lone request wait the whole max wait.
    assert close(policy(max_batch_size=4, max_wait_ms=10).next_batch(lone, 2.0, None), 0.010)


def test_idle_aware_counts_from_the_first_arrival_after_a_busy_forward():
    waiting = [Item(1.000, 5), Item(1.004, 6)]
    p = policy(max_batch_size=4, max_wait_ms=10, batch_wait="idle-aware")
    assert p.next_batch(waiting, 1.050, LastForward(end=1.050, size=3, waiting=2)) == waiting  # 1.010 is past
    assert close(p.next_batch(waiting, 1.005, LastForward(end=0.999, size=3, waiting=0)), 0.005)
    # model-free: a busy forward long ago leaves the model idle for more than the max wait: at once.
    p = policy(max_batch_size=4, max_wait_ms=10, batch_wait="model-free")
    assert p.next_batch(waiting, 1.005, LastForward(end=0.5, size=3, waiting=0)) == waiting


def closed_loop(p: BatchPolicy, clients: int, forwards: int) -> list[int]:
    """Batch sizes of a closed loop of `clients` on a simulated model: a forward of n inputs takes
    10 + 4 n ms; client k starts at k ms; after a forward its i-th answered client sends again
    1 + 0.1 i ms later (answers go out one by one)."""
    pending = [Item(k * 1e-3, 10) for k in range(clients)]
    now, last, sizes = 0.0, None, []
    while len(sizes) < forwards:
        waiting = [x for x in pending if x.arrival <= now]
        if not waiting:
            now = min(x.arrival for x in pending)
            continue
        decision = p.next_batch(waiting, now, last)
        if isinstance(decision, float):  # sleep until the deadline or the next arrival
            now = min(now + decision, min((x.arrival for x in pending if x.arrival > now), default=math.inf))
            continue
        for x in decision:
            pending.remove(x)
        end = now + 0.010 + 0.004 * len(decision)
        sizes.append(len(decision))
        last = LastForward(end, len(decision), sum(x.arrival <= end for x in pending))
        pending += [Item(end + 1e-3 + 1e-4 * i, 10) for i in range(len(decision))]
        now = end
    return sizes


def test_a_saturated_closed_loop_splits_into_cohorts_under_first_arrival_and_merges_under_model_free():
    # Hand-worked: the first batch runs at 5 ms with clients 0-5 (6 inputs, until 39 ms); clients
    # 6-31 all arrive meanwhile and are over 5 ms old when it ends, so first-arrival runs those 26
    # at once, and the 6 come back while they run: two cohorts, 6 and 26, for ever.
    first = closed_loop(policy(max_batch_size=32, max_wait_ms=5), 32, 12)
    assert first[:4] == [6, 26, 6, 26] and set(first) == {6, 26}
    # idle-aware: client 0 runs alone at once (until 14 ms); clients 1-14 are over 5 ms old then
    # and run (until 80 ms) while client 0 and clients 15-31 arrive: 18, then 14, 18, 14, ...
    assert closed_loop(policy(max_batch_size=32, max_wait_ms=5, batch_wait="idle-aware"), 32, 12)[:5] == [
        1, 14, 18, 14, 18]
    # model-free: client 0 finds the model idle and runs alone (until 14 ms); clients 1-14 arrive
    # meanwhile, so the model waits until 19 ms, when clients 1-19 and client 0 (back at 15 ms)
    # are there: 20 (until 109 ms). Clients 20-31 arrive meanwhile, the 20 are back by 112.9 ms:
    # 32, and every batch after is full (32 clients are back within 1 + 3.1 ms < 5 ms).
    merged = closed_loop(policy(max_batch_size=32, max_wait_ms=5, batch_wait="model-free"), 32, 12)
    assert merged == [1, 20] + [32] * 10
