"""Whole-encoder long-context speed and memory: hybrid vs full SDPA vs Hugging Face Longformer (issue 24).

One 6-layer, d=384, 12-head encoder (MiniLM's shape, FFN 1,536, random init, no download), batch 1,
at N = 4,096, 8,192 and 16,384 tokens, inference (eval, no_grad) and forward+backward (train mode,
backward of the summed last hidden state into every parameter):

  hybrid      the project's TextEncoder with `AttentionConfig`'s default hybrid attention (window 128,
              global_k 64, the default `selection`, or `--selection`)
  full        the same encoder with `kind="full"` (dense SDPA over all N keys)
  local       (on request, --variants local) the same encoder with `kind="local"`: window attention
              alone, the floor under any global selection's cost
  longformer  transformers' LongformerModel of the same shape (attention_window 128, global attention
              on the first token as in its classification recipe, attention dropout 0 as ours)

Each (round, case, variant) runs in its own forked process (`_common.run_forked`): the model is built,
one cold call gives `peak_mb`, the extra resident memory above what was resident before it (the
process's VmHWM high-water mark, reset through /proc/self/clear_refs; weights excluded, activations,
autograd graph, gradients and kernel scratch included), then one warm call gives the time (fwd+bwd:
after one more untimed call). Rounds
interleave the variants; a row's `median_ms` and `peak_mb` are medians over rounds, `tokens_per_s` is
N / median. Rows: case `encoder-N=<n>` (inference) or `encoder-N=<n>-fwdbwd`.

    python benchmarks/encoder.py --rounds 2 --train-rounds 1 --out results/encoder.json   # ~40 min, 2 busy cores
    python benchmarks/encoder.py --quick --out results/encoder_quick.json   # inference at 4k and 8k
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import typing

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from _common import peak_memory_mb, print_table, run_forked, write_results  # noqa: E402
from hybridformer.attention import AttentionConfig  # noqa: E402
from hybridformer.encoders.text import TextEncoder  # noqa: E402
from hybridformer.encoders.text_config import TextEncoderConfig  # noqa: E402

LAYERS, D_MODEL, HEADS, D_FF, WINDOW, VOCAB = 6, 384, 12, 1536, 128, 30522
SIZES = [4096, 8192, 16384]
QUICK_SIZES = [4096, 8192]
VARIANTS = ["hybrid", "full", "longformer"]
EXTRA_VARIANTS = ["local"]  # run on request only
SELECTIONS = typing.get_args(typing.get_type_hints(AttentionConfig)["selection"])
# Dense attention's fwd+bwd at 16k: ~3x its forward (62 s a call on 2 loaded cores), cold and timed
# call each round: several minutes for a figure whose ratio the 8k row already gives.
SKIP = {("full", 16384, True): "skipped: full SDPA fwd+bwd at 16,384 tokens takes ~3 min a call on 2 cores"}


def case_name(n: int, backward: bool) -> str:
    return f"encoder-N={n}" + ("-fwdbwd" if backward else "")


def build_hybridformer(kind: str, n: int, selection: str | None) -> TextEncoder:
    """The project's encoder at MiniLM's shape with `kind` attention (AttentionConfig's other defaults)."""
    attention = AttentionConfig(kind=kind, window=WINDOW)
    if selection is not None:
        attention = AttentionConfig(kind=kind, window=WINDOW, selection=selection)
    config = TextEncoderConfig(
        vocab_size=VOCAB, d_model=D_MODEL, n_layers=LAYERS, n_heads=HEADS, d_ff=D_FF, max_positions=n,
        attention=attention,
    )
    return TextEncoder(config)


def build_longformer(n: int):
    """transformers' LongformerModel of the same shape, random init (no download)."""
    from transformers import LongformerConfig, LongformerModel

    config = LongformerConfig(
        vocab_size=VOCAB, hidden_size=D_MODEL, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
        intermediate_size=D_FF, attention_window=WINDOW, max_position_embeddings=n + 2,  # ids from pad+1 = 2
        attention_probs_dropout_prob=0.0,
    )
    return LongformerModel(config, add_pooling_layer=True)


def _build(variant: str, n: int, backward: bool, selection: str | None):
    """A zero-argument callable running one forward (and backward) of `variant` at length n."""
    torch.manual_seed(0)
    ids = torch.randint(5, VOCAB, (1, n), generator=torch.Generator().manual_seed(n))  # (1, N)
    if variant == "longformer":
        model = build_longformer(n)
        global_mask = torch.zeros(1, n, dtype=torch.long)
        global_mask[:, 0] = 1  # the [CLS] token, as LongformerForSequenceClassification does
        forward = lambda: model(ids, attention_mask=torch.ones_like(ids), global_attention_mask=global_mask)  # noqa: E731
    else:
        model = build_hybridformer(variant, n, selection)
        forward = lambda: model(ids)  # noqa: E731
    model.train(backward)
    if not backward:
        return torch.no_grad()(forward)
    params = [p for p in model.parameters() if p.requires_grad]

    def step():
        loss = forward().last_hidden_state.sum()
        torch.autograd.grad(loss, params, allow_unused=True)

    return step


def _measure(variant: str, n: int, backward: bool, selection: str | None, threads: int | None) -> dict:
    """Runs in a forked child: peak memory of a cold call, then the time of one warm call.

    A backward's second call still pays one-off costs (~0.6 s here), so a fwd+bwd whose cold call
    was short enough for that to matter (< 10 s) runs one more untimed call first.
    """
    if threads:
        torch.set_num_threads(threads)
    fn = _build(variant, n, backward, selection)
    start = time.perf_counter()
    peak = peak_memory_mb(fn)
    if backward and time.perf_counter() - start < 10.0:
        fn()
    start = time.perf_counter()
    fn()
    return {"ms": (time.perf_counter() - start) * 1e3, "peak_mb": peak}


def measure_rows(sizes, modes, variants, rounds: dict[bool, int], selection: str | None, threads: int | None) -> list[dict]:
    """Interleaved rounds over every (mode, size, variant); one row per (case, variant) with medians.

    `rounds` maps backward (False: inference, True: fwd+bwd) to that mode's number of rounds.
    """
    samples: dict[tuple, list[dict]] = {}
    for r in range(max(rounds[m] for m in modes)):
        for backward in (m for m in modes if r < rounds[m]):
            for n in sizes:
                for variant in variants:
                    if (variant, n, backward) in SKIP:
                        continue
                    sample = run_forked(_measure, variant, n, backward, selection, threads)
                    samples.setdefault((n, backward, variant), []).append(sample)
                    print(f"round {r}: {case_name(n, backward)} {variant}: {sample['ms']:.0f} ms, "
                          f"{sample['peak_mb']:.0f} MB", flush=True)
    rows = []
    for backward in modes:
        for n in sizes:
            for variant in variants:
                row = {"case": case_name(n, backward), "variant": variant, "n": n, "batch": 1,
                       "mode": "fwdbwd" if backward else "inference"}
                if variant == "hybrid":
                    row["selection"] = selection or AttentionConfig().selection
                got = samples.get((n, backward, variant))
                if got is None:
                    rows.append({**row, "median_ms": None, "note": SKIP[(variant, n, backward)]})
                    continue
                ms = statistics.median(s["ms"] for s in got)
                rows.append({**row, "median_ms": ms, "tokens_per_s": n / (ms / 1e3),
                             "peak_mb": round(statistics.median(s["peak_mb"] for s in got), 1),
                             "times_ms": [round(s["ms"], 1) for s in got], "repeats": len(got)})
    return rows


def targets(rows: list[dict]) -> list[dict]:
    """The issue's targets on this run's rows (value None where a case was not measured)."""
    get = {(r["case"], r["variant"]): r for r in rows}

    def ratio(case, num, den, key):
        a, b = get.get((case, num), {}).get(key), get.get((case, den), {}).get(key)
        return a / b if a and b else None

    checks = []

    def add(name, value, threshold, at_least=True):
        ok = None if value is None else (value >= threshold if at_least else value <= threshold)
        checks.append({"target": name, "value": value, "threshold": threshold, "ok": ok})

    for n in SIZES:
        case = case_name(n, False)
        add(f"{case} hybrid/longformer tokens/s", ratio(case, "hybrid", "longformer", "tokens_per_s"), 3.0)
        add(f"{case} hybrid/longformer peak_mb", ratio(case, "hybrid", "longformer", "peak_mb"), 1.0, at_least=False)
    add("encoder-N=8192 hybrid/full tokens/s", ratio("encoder-N=8192", "hybrid", "full", "tokens_per_s"), 4.0)
    return [c for c in checks if c["value"] is not None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="inference only, N = 4,096 and 8,192, 1 round")
    parser.add_argument("--out", default="results/encoder.json", help="JSON output path")
    parser.add_argument("--sizes", type=int, nargs="*", help=f"sequence lengths (default {SIZES})")
    parser.add_argument("--rounds", type=int, help="interleaved rounds per inference cell (default 3, quick 1)")
    parser.add_argument("--train-rounds", type=int, help="rounds per fwd+bwd cell (default: --rounds)")
    parser.add_argument("--variants", nargs="*", choices=VARIANTS + EXTRA_VARIANTS, default=VARIANTS, help="variants")
    parser.add_argument("--inference-only", action="store_true", help="skip the forward+backward cases")
    parser.add_argument("--selection", choices=SELECTIONS, help="hybrid's selection (default: AttentionConfig's)")
    parser.add_argument("--threads", type=int, help="torch threads in every child (default: torch's)")
    parser.add_argument("--note", default="", help="free text stored in the JSON (machine state, load)")
    args = parser.parse_args()
    for name in ("rounds", "train_rounds"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    sizes = args.sizes or (QUICK_SIZES if args.quick else SIZES)
    if any(n < WINDOW or n % WINDOW for n in sizes):
        parser.error(f"--sizes must be multiples of the window {WINDOW}, got {sizes}")
    rounds = args.rounds or (1 if args.quick else 3)
    rounds = {False: rounds, True: args.train_rounds or rounds}
    modes = [False] if args.quick or args.inference_only else [False, True]
    if "longformer" in args.variants:
        # Imported once here: forked children then start without re-importing transformers.
        import transformers.models.longformer.modeling_longformer  # noqa: F401
    load_start = os.getloadavg()
    rows = measure_rows(sizes, modes, args.variants, rounds, args.selection, args.threads)
    checks = targets(rows)
    print()
    print_table(rows, ["case", "variant", "median_ms", "tokens_per_s", "peak_mb", "repeats", "note"])
    print()
    print_table(checks)
    config = {"layers": LAYERS, "d_model": D_MODEL, "heads": HEADS, "d_ff": D_FF, "window": WINDOW, "batch": 1,
              "selection": args.selection or AttentionConfig().selection, "global_k": AttentionConfig().global_k,
              "rounds": rounds[False], "train_rounds": rounds[True], "threads": args.threads or torch.get_num_threads(),
              "peak_mb": "median over rounds of the VmHWM growth (clear_refs reset) of one cold call in a fresh fork"}
    # machine_info() records the load at the end; the load at the start goes beside it.
    write_results(args.out, rows, config=config, targets=checks, note=args.note, load_average_start=load_start)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
