"""Training, evaluation and step timing of one recall run (benchmarks/recall.py)."""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from _recall_task import RecallModel, attention_config, found, make_batch, oracle_indices
from hybridformer.io import write_json

BATCH, LR, WARMUP, EVAL = 16, 3e-3, 20, 256
EVAL_TOKENS = 16384  # tokens per evaluation batch (64 sequences at N = 256, 2 at 8,192)


def _model(variant: str, positions: str) -> RecallModel:
    return RecallModel(attention_config(variant), positions)


def _step(model: RecallModel, optimizer: torch.optim.Optimizer, batch: dict, oracle: bool) -> float:
    logits, _ = model(batch, oracle_indices(batch) if oracle else None)
    loss = F.cross_entropy(logits, batch["label"])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def train_one(
    variant: str, n: int, positions: str, seed: int, steps: int, batch_size: int = BATCH
) -> tuple[RecallModel, dict]:
    """Train one variant at length `n` from seed `seed` for `steps` steps of `batch_size` sequences:
    (model, training stats)."""
    torch.manual_seed(seed)
    model = _model(variant, positions)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / WARMUP))
    generator = torch.Generator().manual_seed(1000 + seed)
    start, losses = time.perf_counter(), []
    for _ in range(steps):
        losses.append(_step(model, optimizer, make_batch(generator, batch_size, n), variant == "oracle"))
        schedule.step()
    train_s = time.perf_counter() - start
    stats = dict(
        train_n=n, positions=positions, batch=batch_size, train_s=train_s, final_loss=statistics.mean(losses[-20:])
    )
    return model.eval(), stats


def evaluate(model: RecallModel, variant: str, n: int, sequences: int = EVAL) -> dict:
    """Accuracy and selection_recall on `sequences` fresh sequences of length `n` (the same ones for
    every run: a fixed generator)."""
    oracle, correct, hits, done = variant == "oracle", 0, 0, 0
    eval_gen = torch.Generator().manual_seed(99)
    per_batch = max(1, min(64, EVAL_TOKENS // n))  # bounds the compressed branch's (N x N/c) memory
    start = time.perf_counter()
    with torch.no_grad():
        while done < sequences:
            batch = make_batch(eval_gen, min(per_batch, sequences - done), n)
            logits, sets = model(batch, oracle_indices(batch) if oracle else None)
            correct += (logits.argmax(-1) == batch["label"]).sum().item()
            hits += found(sets, batch["needed"]).sum().item()
            done += batch["label"].shape[0]
    return dict(
        accuracy=correct / sequences,
        selection_recall=None if variant == "full" else hits / sequences,
        eval_s=time.perf_counter() - start,
        eval_sequences=sequences,
    )


def run_one(
    variant: str, train_n: int, positions: str, seed: int, steps: int, sizes: list[int], stem: Path,
    sequences: int = EVAL, batch_size: int = BATCH,
) -> dict:
    """Train (or load the weights saved at `stem`.pt) and evaluate at every size not yet evaluated;
    the record {train stats, "eval": {N: result}} is saved at `stem`.json after each step."""
    record = json.loads(stem.with_suffix(".json").read_text()) if stem.with_suffix(".json").exists() else None
    weights = stem.with_suffix(".pt")
    if record is None or not weights.exists():
        model, stats = train_one(variant, train_n, positions, seed, steps, batch_size)
        record = dict(stats, eval={})
        weights.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), weights)
        write_json(stem.with_suffix(".json"), record)
    else:
        torch.manual_seed(seed)
        model = _model(variant, positions)
        model.load_state_dict(torch.load(weights))
        model.eval()
    for n in sizes:
        if str(n) not in record["eval"]:
            record["eval"][str(n)] = evaluate(model, variant, n, sequences)
            write_json(stem.with_suffix(".json"), record)
    return record


def time_steps(variants: list[str], n: int, positions: str, rounds: int, clock: str = "wall") -> dict[str, dict]:
    """Median time of one training step (batch 16 at length `n`, forward + backward + Adam) of each
    variant, the variants interleaved round by round after one warm-up step each, so load changes hit
    every variant alike. `clock="wall"`: wall time with torch's default threads; `"cpu"`: this
    process's CPU time on one thread, which other processes on a shared machine perturb far less
    (they still share caches and memory bandwidth). Returns {"variant@n": {...}}."""
    if clock == "cpu":
        torch.set_num_threads(1)
    now = time.process_time if clock == "cpu" else time.perf_counter
    models = {}
    for variant in variants:
        torch.manual_seed(0)
        model = _model(variant, positions)
        models[variant] = (model, torch.optim.Adam(model.parameters(), lr=LR))
    generator = torch.Generator().manual_seed(7)
    batch = make_batch(generator, BATCH, n)
    times: dict[str, list[float]] = {v: [] for v in variants}
    for round_ in range(rounds + 1):
        for variant, (model, optimizer) in models.items():
            start = now()
            _step(model, optimizer, batch, variant == "oracle")
            if round_ > 0:  # round 0 warms up
                times[variant].append(now() - start)
    load = os.getloadavg()[0]
    return {
        f"{v}@{n}": dict(median_ms=1e3 * statistics.median(t), all_ms=[round(1e3 * x, 1) for x in t], clock=clock,
                         threads=torch.get_num_threads(), load_average=load)
        for v, t in times.items()
    }
