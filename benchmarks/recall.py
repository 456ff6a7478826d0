"""Long-range recall: does the global selection find what matters far outside the window? (issue 16)

Task (keyed needle retrieval, a one-hop associative recall): a sequence of N tokens, filler tokens
(32 kinds) everywhere except four *pair* tokens, each carrying a key (of 16) and a value (of 16),
the keys distinct, at random positions in the first three quarters; the last token is the *query*,
carrying one of the four keys. The model classifies the query's value from its output (16 classes,
chance 1/16). Token embedding = kind + filler id + key + value embeddings (zero where absent).

Local attention provably cannot beat chance: with ``local="block"`` a token only ever reads its own
block of `window` tokens, in every layer, and every pair lies >= N/4 - window tokens before the
query's block. So whatever crosses must go through the global selection.

Model: 1 pre-LN block (d 64, 4 heads, FFN 128; one hop suffices), window 64, global_k 16,
non-causal, no positional information at all (token content only; the block-local attention's
structure is the same at every length); Adam lr 3e-3 (20 warm-up steps), batch 16, the same steps and
data for every variant (no per-module lr).

Protocol: every variant is trained once per seed at ``--train-n`` (512 by default) and the trained
model is evaluated at every ``--sizes`` length (512, 2048, 8192). As the model has no positions, a
longer sequence is the same task with more distractor fillers (four pairs among 6,144 candidate
positions instead of 384). This keeps the training CPU within a shared 2-core machine's budget; the
rows carry ``train_n`` so the protocol is never hidden. ``--train-n 2048`` trains at the target length.

Variants:
  local                  kind="local": the window only
  learned-scorer         kind="hybrid", selection="scorer" (straight-through token scorer, Gumbel noise)
  learned-compressed     kind="hybrid", selection="compressed" (NSA compressed-block selection, blocks
                         of 16, i.e. 1 block per set; plus the gated compressed branch), with
                         compress_vote="max" and compress_summary="sum"
  learned-compressed-b4  the same with blocks of 4 (4 blocks per set, O(N·N/4) compressed branch)
  oracle                 kind="hybrid", the needed pair's position passed as `global_indices` (the ceiling)
  full                   kind="full", dense attention (evaluated up to ``--full-max``)

Fields: score_mean / score_std (eval accuracy over seeds, eval_sequences fresh sequences each: 256
unless `--eval-sequences` says fewer for a costly N), score_per_seed,
selection_recall (fraction of eval sequences where the queried pair's position is in the set the
query's block sees, in at least one layer; null for full), train_s (mean wall time of training, at
nice 19 on a shared machine: not a timing claim), median_ms (of one training step, same caveat),
train_n, seeds. Weights and one JSON per run under `--runs` (resumable: finished trainings and
evaluations are read back, a missing evaluation length is added from the saved weights).

    python benchmarks/recall.py --quick --out /tmp/recall_quick.json
    python benchmarks/recall.py --out results/recall.json --markdown results/recall.md
    python benchmarks/recall.py ... --collect   # aggregate the finished runs only (lists the rest)
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from _common import print_table, run_forked, write_results
from _recall_notes import NOTE_LOAD, NOTES
from hybridformer.attention import AttentionConfig, HybridAttention
from hybridformer.io import write_json, write_text

D, HEADS, LAYERS, WINDOW, K, BLOCK = 64, 4, 1, 64, 16, 16
FILLERS, KEYS, VALUES, PAIRS = 32, 16, 16, 4
BATCH, LR, WARMUP, EVAL = 16, 3e-3, 20, 256
EVAL_TOKENS = 16384  # tokens per evaluation batch (64 sequences at N = 256, 2 at 8,192)
VARIANTS = ["local", "learned-scorer", "learned-compressed", "learned-compressed-b4", "oracle", "full"]


def make_batch(generator: torch.Generator, batch: int, n: int) -> dict[str, Tensor]:
    """Token fields (kind 0 filler / 1 pair / 2 query; filler, key, value ids with -1 = absent), the
    label and the needed position (the queried pair's)."""
    kind = torch.zeros(batch, n, dtype=torch.long)
    filler = torch.randint(0, FILLERS, (batch, n), generator=generator)
    key = torch.full((batch, n), -1, dtype=torch.long)
    value = torch.full((batch, n), -1, dtype=torch.long)
    rows = torch.arange(batch)[:, None]
    pos = torch.rand(batch, 3 * n // 4, generator=generator).argsort(-1)[:, :PAIRS]  # (B, P) distinct
    keys = torch.rand(batch, KEYS, generator=generator).argsort(-1)[:, :PAIRS]  # distinct keys
    values = torch.randint(0, VALUES, (batch, PAIRS), generator=generator)
    kind[rows, pos], key[rows, pos], value[rows, pos], filler[rows, pos] = 1, keys, values, -1
    which = torch.randint(0, PAIRS, (batch,), generator=generator)
    b = torch.arange(batch)
    kind[:, -1], filler[:, -1], key[:, -1] = 2, -1, keys[b, which]
    return dict(kind=kind, filler=filler, key=key, value=value, label=values[b, which], needed=pos[b, which])


class Block(nn.Module):
    def __init__(self, attention: AttentionConfig) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.attention = HybridAttention(attention)
        self.ffn = nn.Sequential(nn.Linear(D, 2 * D), nn.GELU(), nn.Linear(2 * D, D))

    def forward(self, x: Tensor, global_indices: Tensor | None):
        out = self.attention(self.norm1(x), global_indices=global_indices)
        x = x + out.hidden_states
        return x + self.ffn(self.norm2(x)), out.global_indices


class RecallModel(nn.Module):
    def __init__(self, attention: AttentionConfig) -> None:
        super().__init__()
        self.kind = nn.Embedding(3, D)
        self.filler = nn.Embedding(FILLERS + 1, D, padding_idx=FILLERS)  # id FILLERS = absent
        self.key = nn.Embedding(KEYS + 1, D, padding_idx=KEYS)
        self.value = nn.Embedding(VALUES + 1, D, padding_idx=VALUES)
        self.blocks = nn.ModuleList(Block(attention) for _ in range(LAYERS))
        self.norm = nn.LayerNorm(D)
        self.head = nn.Linear(D, VALUES)

    def forward(self, batch: dict[str, Tensor], global_indices: Tensor | None = None):
        absent = lambda ids, size: torch.where(ids < 0, size, ids)  # noqa: E731
        x = (
            self.kind(batch["kind"])
            + self.filler(absent(batch["filler"], FILLERS))
            + self.key(absent(batch["key"], KEYS))
            + self.value(absent(batch["value"], VALUES))
        )
        sets = []
        for block in self.blocks:
            x, chosen = block(x, global_indices)
            sets.append(chosen)
        return self.head(self.norm(x[:, -1])), sets


def attention_config(variant: str) -> AttentionConfig:
    common = dict(d_model=D, n_heads=HEADS, window=WINDOW, global_k=K)
    if variant == "local":
        return AttentionConfig(kind="local", **common)
    if variant == "full":
        return AttentionConfig(kind="full", **common)
    if variant.startswith("learned-compressed"):
        block = 4 if "-b4" in variant else BLOCK  # blocks of 4: 4 blocks per set
        return AttentionConfig(
            kind="hybrid", selection="compressed", compress_block=block, compress_vote="max", compress_summary="sum", **common
        )
    return AttentionConfig(kind="hybrid", selection="scorer", **common)  # learned-scorer, oracle


def oracle_indices(batch: dict[str, Tensor]) -> Tensor:
    """(B, K): the needed position, the other slots empty."""
    sets = torch.full((batch["needed"].shape[0], K), -1, dtype=torch.long)
    sets[:, 0] = batch["needed"]
    return sets


def found(sets: list[Tensor | None], needed: Tensor) -> Tensor:
    """Bool (B,): the needed position is in the set the query's (last) block sees, in some layer."""
    hit = torch.zeros(needed.shape[0], dtype=torch.bool)
    for chosen in sets:
        if chosen is not None:
            last = chosen if chosen.dim() == 2 else chosen[:, -1]  # (B, K)
            hit |= (last == needed[:, None]).any(-1)
    return hit


def _run_one_thread(
    variant: str, train_n: int, seed: int, steps: int, sizes: list[int], stem: Path, sequences: int
) -> dict:
    # One thread: on the shared 2-core machine two spinning threads per run only lose time.
    torch.set_num_threads(1)
    return run_one(variant, train_n, seed, steps, sizes, stem, sequences)


def train_one(variant: str, n: int, seed: int, steps: int) -> tuple[RecallModel, dict]:
    """Train one variant at length `n` from seed `seed` for `steps` steps: (model, training stats)."""
    torch.manual_seed(seed)
    model = RecallModel(attention_config(variant))
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / WARMUP))
    generator = torch.Generator().manual_seed(1000 + seed)
    oracle = variant == "oracle"
    start, losses = time.perf_counter(), []
    for _ in range(steps):
        batch = make_batch(generator, BATCH, n)
        logits, _ = model(batch, oracle_indices(batch) if oracle else None)
        loss = F.cross_entropy(logits, batch["label"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    train_s = time.perf_counter() - start
    stats = dict(train_n=n, train_s=train_s, step_ms=1e3 * train_s / steps, final_loss=statistics.mean(losses[-20:]))
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
    variant: str, train_n: int, seed: int, steps: int, sizes: list[int], stem: Path, sequences: int = EVAL
) -> dict:
    """Train (or load the weights saved at `stem`.pt) and evaluate at every size not yet evaluated;
    the record {train stats, "eval": {N: result}} is saved at `stem`.json after each step."""
    record = json.loads(stem.with_suffix(".json").read_text()) if stem.with_suffix(".json").exists() else None
    weights = stem.with_suffix(".pt")
    if record is None or not weights.exists():
        model, stats = train_one(variant, train_n, seed, steps)
        record = dict(stats, eval={})
        weights.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), weights)
        write_json(stem.with_suffix(".json"), record)
    else:
        torch.manual_seed(seed)
        model = RecallModel(attention_config(variant))
        model.load_state_dict(torch.load(weights))
        model.eval()
    for n in sizes:
        if str(n) not in record["eval"]:
            record["eval"][str(n)] = evaluate(model, variant, n, sequences)
            write_json(stem.with_suffix(".json"), record)
    return record


def run_result(
    runs: Path, variant: str, train_n: int, seed: int, steps: int, sizes: list[int], collect: bool, sequences: int
) -> dict | None:
    """The run's record, training/evaluating what is missing unless `collect`."""
    stem = runs / f"train-N={train_n}" / f"{variant}-seed{seed}-steps{steps}"
    path = stem.with_suffix(".json")
    record = json.loads(path.read_text()) if path.exists() else None
    if collect or (record is not None and all(str(n) in record["eval"] for n in sizes)):
        return record
    return run_forked(_run_one_thread, variant, train_n, seed, steps, sizes, stem, sequences)


def check_targets(rows: list[dict]) -> list[str]:
    """Issue 16's targets per case: the best learned selection >= 90% of oracle, >= 3x local, and its
    selection_recall >= 0.8."""
    lines = []
    for case in dict.fromkeys(r["case"] for r in rows):
        by = {r["variant"]: r for r in rows if r["case"] == case}
        learned = [r for v, r in by.items() if v.startswith("learned-")]
        if not learned or "oracle" not in by or "local" not in by:
            lines.append(f"{case}: targets not checkable (needs local, oracle and a learned variant)")
            continue
        best = max(learned, key=lambda r: r["score_mean"])
        oracle, local = by["oracle"]["score_mean"], by["local"]["score_mean"]
        checks = [
            (f"{best['score_mean']:.3f} >= 0.9 x oracle {oracle:.3f}", best["score_mean"] >= 0.9 * oracle),
            (f">= 3 x local {local:.3f}", best["score_mean"] >= 3 * local),
            (f"selection_recall {best['selection_recall']:.3f} >= 0.8", best["selection_recall"] >= 0.8),
        ]
        verdict = "; ".join(f"{text} {'MET' if ok else 'NOT MET'}" for text, ok in checks)
        lines.append(f"{case}: best learned = {best['variant']}: {verdict}")
    return lines


def write_markdown(path: str, rows: list[dict], budget: dict, not_run: list[str]) -> None:
    import os

    columns = [
        "case", "variant", "train_n", "score_mean", "score_std", "selection_recall", "eval_sequences", "train_s",
        "median_ms", "seeds", "steps",
    ]
    fmt = lambda v: "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))  # noqa: E731
    lines = [
        "# Long-range recall (benchmarks/recall.py, issue 16)",
        "",
        f"Budget per run (every variant alike): {json.dumps(budget)}. Chance = {1 / VALUES:.4f}.",
        f"Machine: 2 shared CPU cores, load average {os.getloadavg()[0]:.1f} when written. {NOTE_LOAD}",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows),
        "",
        "Targets:",
        *(f"- {line}" for line in check_targets(rows)),
        "",
        "Not run: " + (", ".join(not_run) if not_run else "nothing of the requested grid"),
        "",
        NOTES,
    ]
    write_text(path, "\n".join(lines) + "\n")


def aggregate(n: int, variant: str, runs: list[dict], steps: int) -> dict:
    """One SPEC §9 row: a variant trained at runs' train_n, evaluated at `n`, over its seeds."""
    evals = [r["eval"][str(n)] for r in runs]
    acc = [e["accuracy"] for e in evals]
    recall = [e["selection_recall"] for e in evals]
    return dict(
        case=f"recall-N={n}",
        variant=variant,
        train_n=runs[0]["train_n"],
        median_ms=statistics.median(r["step_ms"] for r in runs),
        score_mean=statistics.mean(acc),
        score_std=statistics.stdev(acc) if len(acc) > 1 else 0.0,
        score_per_seed=acc,
        eval_sequences=min(e.get("eval_sequences", EVAL) for e in evals),
        selection_recall=None if recall[0] is None else statistics.mean(recall),
        train_s=statistics.mean(r["train_s"] for r in runs),
        seeds=len(runs),
        steps=steps,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="train N=320, 1 seed, 30 steps, evaluate at 320 and 640")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 2048, 8192], help="evaluation lengths")
    parser.add_argument("--train-n", type=int, default=512, help="training length (the model has no positions)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--only-seed", type=int, default=None, help="run just this seed (parallel workers); aggregate with --collect")
    parser.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    parser.add_argument("--eval-sequences", type=int, default=EVAL, help="evaluation sequences per new (run, N)")
    parser.add_argument("--full-max", type=int, default=2048, help="largest evaluation N for the full variant")
    parser.add_argument("--runs", default="runs/recall", help="folder of per-run weights and JSON (resume)")
    parser.add_argument("--out", default="results/recall.json")
    parser.add_argument("--markdown", default=None, help="also write a Markdown table (results/recall.md)")
    parser.add_argument("--collect", action="store_true", help="only aggregate the runs already done")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.train_n, args.seeds, args.steps = [320, 640], 320, 1, 30
    for name in ("seeds", "steps", "eval_sequences"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}: must be >= 1")
    for n in [args.train_n, *args.sizes]:
        if n < 4 * WINDOW + 8:
            parser.error(f"--sizes/--train-n: N must be >= {4 * WINDOW + 8} (pairs outside the query's window), got {n}")
    rows, not_run = [], []
    for variant in args.variants:
        sizes = [n for n in args.sizes if variant != "full" or n <= args.full_max]
        not_run += [f"recall-N={n} full (dense N^2 over the budget)" for n in args.sizes if n not in sizes]
        seeds = range(args.seeds) if args.only_seed is None else [args.only_seed]
        runs = [
            run_result(Path(args.runs), variant, args.train_n, s, args.steps, sizes, args.collect, args.eval_sequences)
            for s in seeds
        ]
        for n in sizes:
            done = [r for r in runs if r is not None and str(n) in r["eval"]]
            if len(done) < args.seeds:
                not_run.append(f"recall-N={n} {variant} ({len(done)} of {args.seeds} seeds done)")
            if done:
                rows.append(aggregate(n, variant, done, args.steps))
                print_table(rows[-1:])
    not_run += [f"training at N={n} (the N={n} rows evaluate models trained at N={args.train_n})" for n in args.sizes if n > args.train_n]
    not_run.append("learned-indexer (DeepSeek-V3.2's lightning indexer: not implemented, see docs/attention_selection.md)")
    rows.sort(key=lambda r: (int(r["case"].split("=")[1]), VARIANTS.index(r["variant"])))
    print_table(rows)
    budget = dict(train_n=args.train_n, steps=args.steps, batch=BATCH, lr=LR, warmup=WARMUP, eval_sequences=EVAL,
                  chance=1 / VALUES, model=dict(d=D, heads=HEADS, layers=LAYERS, window=WINDOW, global_k=K))
    if not_run:
        print("not run:", ", ".join(not_run))
    write_results(args.out, rows, budget=budget, not_run=not_run, targets=check_targets(rows), note=NOTE_LOAD)
    if args.markdown:
        write_markdown(args.markdown, rows, budget, not_run)
    for line in check_targets(rows):
        print(line)


if __name__ == "__main__":
    main()
