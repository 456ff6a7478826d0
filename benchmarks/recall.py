"""Long-range recall: does the global selection find what matters far outside the window? (issues 16, 24)

Task, model and variants: ``_recall_task.py`` (four keyed pairs among fillers, the query key last,
16-way value classification; local attention is at chance by construction). Model: 1 pre-LN block
(d 64, 4 heads, FFN 128), window 64, global_k 16, non-causal; Adam lr 3e-3 (20 warm-up steps), batch
16 (``--batch``), the same steps and data for every variant (no per-module lr).

Protocols (rows carry ``train_n`` and ``positions``, so neither is ever hidden):

- default, *train where it evaluates*: sinusoidal positions added to the embeddings (fixed, defined at
  every length, no parameters: the simplest length-agnostic choice; RoPE would change the attention
  layer under test), one model trained per variant, seed and N in ``--sizes`` (2,048 and 8,192),
  evaluated at that N. ``--budget N:STEPS:SEEDS`` gives a length its own budget (fewer at 8,192).
- ``--train-n 512 --positions none``, issue 16's protocol: trained once at 512 with no positional
  information, evaluated at every ``--sizes`` (a longer N = more distractors). Results in
  ``results/recall_512.*``.

Variants:
  local                  kind="local": the window only
  learned-scorer         kind="hybrid", selection="scorer" (straight-through token scorer, Gumbel noise)
  learned-compressed     selection="compressed", blocks of 16, compress_vote="max", compress_summary="sum"
  learned-compressed-b4  the same with blocks of 4 (O(N·N/4) compressed branch)
  learned-pooled         selection="pooled" (query-block pooled selection, O(N·N/window))
  oracle                 the needed pair's position passed as `global_indices` (the ceiling)
  full                   kind="full", dense attention (up to ``--full-max``)

Fields: score_mean / score_median / score_std (eval accuracy over seeds, eval_sequences fresh
sequences each), score_per_seed, selection_recall (median over seeds of the fraction of eval sequences
whose queried pair is in the set the query's block sees; null for full), train_s (wall time of
training, at nice 19 on a shared machine: not a timing claim), step_ms (median training step of the
separate timing pass, ``--timing``, meant to run alone on a quiet machine; its load average in the notes),
train_n, positions, seeds, steps. Runs (weights + JSON) under `--runs`, resumable.

    python benchmarks/recall.py --quick --out /tmp/recall_quick.json
    python benchmarks/recall.py --budget 2048:400:3 8192:300:3 --out results/recall.json --markdown results/recall.md
    python benchmarks/recall.py --timing --timing-sizes 2048 8192 16384   # step times -> runs/recall/timing.json
    python benchmarks/recall.py ... --collect   # aggregate the finished runs only (lists the rest)
    python benchmarks/recall.py --train-n 512 --positions none --sizes 512 2048 8192 --out results/recall_512.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from _common import print_table, run_forked, write_results
from _recall_report import check_targets, write_markdown
from _recall_task import D, HEADS, K, LAYERS, POSITIONS, VALUES, VARIANTS, WINDOW
from _recall_train import BATCH, EVAL, LR, WARMUP, run_one, time_steps
from hybridformer.io import write_json


def _run_one_thread(*args) -> dict:
    # One thread: on the shared 2-core machine two spinning threads per run only lose time.
    torch.set_num_threads(1)
    return run_one(*args)


def run_result(runs: Path, variant: str, train_n: int, positions: str, seed: int, steps: int, sizes: list[int],
               collect: bool, sequences: int, batch_size: int) -> dict | None:
    """The run's record, training/evaluating what is missing unless `collect`."""
    folder = f"train-N={train_n}" if positions == "none" else f"train-N={train_n}-{positions}"
    stem = runs / folder / f"{variant}-seed{seed}-steps{steps}{'' if batch_size == BATCH else f'-batch{batch_size}'}"
    path = stem.with_suffix(".json")
    record = json.loads(path.read_text()) if path.exists() else None
    if collect or (record is not None and all(str(n) in record["eval"] for n in sizes)):
        return record
    return run_forked(_run_one_thread, variant, train_n, positions, seed, steps, sizes, stem, sequences, batch_size)


def aggregate(n: int, variant: str, runs: list[dict], steps: int, positions: str, timing: dict) -> dict:
    """One SPEC §9 row: a variant trained at runs' train_n, evaluated at `n`, over its seeds."""
    evals = [r["eval"][str(n)] for r in runs]
    acc = [e["accuracy"] for e in evals]
    recall = [e["selection_recall"] for e in evals]
    train_n = runs[0]["train_n"]
    return dict(
        case=f"recall-N={n}",
        variant=variant,
        train_n=train_n,
        positions=positions,
        score_mean=statistics.mean(acc),
        score_median=statistics.median(acc),
        score_std=statistics.stdev(acc) if len(acc) > 1 else 0.0,
        score_per_seed=acc,
        eval_sequences=min(e["eval_sequences"] for e in evals),
        selection_recall=None if recall[0] is None else statistics.median(recall),
        step_ms=timing.get(f"{variant}@{train_n}", {}).get("median_ms"),
        train_s=statistics.mean(r["train_s"] for r in runs),
        seeds=len(runs),
        steps=steps,
    )


def parse_budgets(items: list[str], steps: int, seeds: int) -> dict[int, tuple[int, int]]:
    budgets = {}
    for item in items:
        try:
            n, s, k = (int(part) for part in item.split(":"))
        except ValueError:
            raise SystemExit(f"--budget: expected N:STEPS:SEEDS (e.g. 8192:300:3), got {item!r}") from None
        budgets[n] = (s, k)
    return budgets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="train at N=320, 1 seed, 30 steps")
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 8192], help="training and evaluation lengths")
    parser.add_argument("--train-n", type=int, default=None, help="train once at this N and evaluate at every size")
    parser.add_argument("--positions", choices=POSITIONS, default="sinusoidal")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=BATCH, help="training sequences per step")
    parser.add_argument("--budget", nargs="+", default=[], help="per training length N:STEPS:SEEDS")
    parser.add_argument("--only-seed", type=int, default=None, help="run just this seed (parallel workers)")
    parser.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    parser.add_argument("--eval-sequences", type=int, default=EVAL, help="evaluation sequences per (run, N)")
    parser.add_argument("--full-max", type=int, default=2048, help="largest N for the full variant")
    parser.add_argument("--b4-max", type=int, default=2048, help="largest N for learned-compressed-b4 (O(N·N/4))")
    parser.add_argument("--runs", default="runs/recall", help="folder of per-run weights and JSON (resume)")
    parser.add_argument("--timing", action="store_true", help="time training steps only (into RUNS/timing.json)")
    parser.add_argument("--timing-sizes", type=int, nargs="+", default=[2048, 8192, 16384])
    parser.add_argument("--timing-rounds", type=int, default=5)
    parser.add_argument("--timing-clock", choices=["wall", "cpu"], default="wall",
                        help="wall time (default threads) or one thread's CPU time (for a loaded machine)")
    parser.add_argument("--out", default="results/recall.json")
    parser.add_argument("--markdown", default=None, help="also write a Markdown table (results/recall.md)")
    parser.add_argument("--collect", action="store_true", help="only aggregate the runs already done")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.seeds, args.steps = [320], 1, 30
    budgets = parse_budgets(args.budget, args.steps, args.seeds)
    for name in ("seeds", "steps", "eval_sequences", "batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}: must be >= 1")
    for n in [*([args.train_n] if args.train_n else []), *args.sizes]:
        if n < 4 * WINDOW + 8:
            parser.error(f"--sizes/--train-n: N must be >= {4 * WINDOW + 8} (pairs outside the query's window), got {n}")
    timing_path = Path(args.runs) / "timing.json"
    timing = json.loads(timing_path.read_text()) if timing_path.exists() else {}
    if args.timing:
        for n in args.timing_sizes:
            variants = [v for v in args.variants if allowed(v, n, args, timing=True)]
            timing.update(run_forked(time_steps, variants, n, args.positions, args.timing_rounds, args.timing_clock))
            write_json(timing_path, timing)
            print(json.dumps({k: v for k, v in timing.items() if k.endswith(f"@{n}")}, indent=1))
        return
    rows, not_run = [], []
    trainings = [args.train_n] if args.train_n else args.sizes
    for train_n in trainings:
        steps, n_seeds = budgets.get(train_n, (args.steps, args.seeds))
        sizes = args.sizes if args.train_n else [train_n]
        for variant in args.variants:
            if not allowed(variant, train_n, args):
                not_run.append(f"train-N={train_n} {variant} (over the CPU budget)")
                continue
            seeds = range(n_seeds) if args.only_seed is None else [args.only_seed]
            runs = [
                run_result(Path(args.runs), variant, train_n, args.positions, s, steps, sizes, args.collect,
                           args.eval_sequences, args.batch)
                for s in seeds
            ]
            for n in sizes:
                done = [r for r in runs if r is not None and str(n) in r["eval"]]
                if len(done) < n_seeds:
                    not_run.append(f"recall-N={n} {variant} ({len(done)} of {n_seeds} seeds done)")
                if done:
                    rows.append(aggregate(n, variant, done, steps, args.positions, timing))
                    print_table(rows[-1:])
    rows.sort(key=lambda r: (r["train_n"], int(r["case"].split("=")[1]), VARIANTS.index(r["variant"])))
    print_table(rows)
    budget = dict(protocol="train at each N" if args.train_n is None else f"train at {args.train_n}, evaluate at each N",
                  positions=args.positions, steps=args.steps, seeds=args.seeds, per_length=args.budget, batch=args.batch,
                  lr=LR, warmup=WARMUP, chance=1 / VALUES,
                  model=dict(d=D, heads=HEADS, layers=LAYERS, window=WINDOW, global_k=K))
    targets = check_targets(rows, timing)
    if not_run:
        print("not run:", ", ".join(not_run))
    write_results(args.out, rows, budget=budget, not_run=not_run, targets=targets, timing=timing)
    if args.markdown:
        write_markdown(args.markdown, rows, budget, not_run, targets, timing)
    for line in targets:
        print(line)


def allowed(variant: str, n: int, args: argparse.Namespace, timing: bool = False) -> bool:
    """Whether `variant` runs at length `n` within the CPU budget (dense full and blocks of 4 are capped;
    a few timed steps of full attention are affordable up to 8,192)."""
    if variant == "full":
        return n <= (max(args.full_max, 8192) if timing else args.full_max)
    if variant == "learned-compressed-b4":
        return n <= args.b4_max
    return True


if __name__ == "__main__":
    main()
