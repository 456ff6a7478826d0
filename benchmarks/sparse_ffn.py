"""Dense FFN vs sparse (gated) FFN inference: median time, speedup and parameters (SPEC §3, §9).

Cases ``b<batch>-a<active fraction>``: batch 1 and 32, sequence 128, d_model 512, d_ff 2048, active
fractions 1.0 / 0.7 / 0.5 / 0.3. Variants:

- ``dense``: ``GatedFFN`` with gates off, i.e. ``fc_out(gelu(fc_in(x)))``;
- ``sparse``: ``GatedFFN`` with gates on (same FFN weights), eval mode, threshold gates, so only the
  open groups are computed by the grouped-dispatch kernel. The time includes the gate MLP.

How an active fraction ``a`` is forced: the gate keeps random weights (std 0.05, so every token gets
its own pattern of open groups, as a trained gate gives) and each group's bias is set to minus the
``1 - a`` quantile of that group's logits on the benchmark batch, so each group opens for a fraction
``a`` of the tokens (a = 1: a bias far above every logit). The measured fraction is reported in ``active_fraction``.

Both variants of a case are timed in alternation (one call each per round, median over rounds), so
their ratio is meaningful on a noisy machine.

    python benchmarks/sparse_ffn.py --quick --out results/sparse_ffn.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import print_table, time_median, write_results  # noqa: E402

from hybridformer.sparsity import GatedFFN, SparsityConfig, count_parameters  # noqa: E402

D_MODEL, D_FF, SEQ = 512, 2048, 128
BATCHES = (1, 32)
FRACTIONS = (1.0, 0.7, 0.5, 0.3)


def build(n_groups: int, x: torch.Tensor, active: float) -> tuple[GatedFFN, GatedFFN]:
    """A dense FFN and a gated copy whose gates open a fraction ``active`` of (token, group) pairs on ``x``."""
    torch.manual_seed(0)
    dense = GatedFFN(D_MODEL, D_FF, SparsityConfig(enabled=False)).eval()
    sparse = GatedFFN(D_MODEL, D_FF, SparsityConfig(enabled=True, n_groups=n_groups)).eval()
    sparse.load_state_dict(dense.state_dict(), strict=False)
    groups = sparse.gate.groups
    with torch.no_grad():
        groups.weight.normal_(std=0.05)
        logits = x.reshape(-1, D_MODEL) @ groups.weight.T  # (T, G) without bias
        if active >= 1.0:
            groups.bias.fill_(30.0)
        else:
            groups.bias.copy_(-torch.quantile(logits, 1.0 - active, dim=0))
    return dense, sparse


def measure(batch: int, active: float, n_groups: int, rounds: int) -> list[dict]:
    """Rows of case b<batch>-a<active>: dense and sparse timed in alternation."""
    x = torch.randn(batch, SEQ, D_MODEL)
    dense, sparse = build(n_groups, x, active)
    with torch.inference_mode():
        measured = sparse(x).stats.active_fraction.item()
        run_dense = lambda: dense(x)  # noqa: E731
        run_sparse = lambda: sparse(x)  # noqa: E731
        time_median(run_dense, repeats=1, warmup=3)  # first calls allocate and pick kernels
        time_median(run_sparse, repeats=1, warmup=3)
        times: dict[str, list[float]] = {"dense": [], "sparse": []}
        for _ in range(rounds):
            times["dense"].append(time_median(run_dense, repeats=1, warmup=0))
            times["sparse"].append(time_median(run_sparse, repeats=1, warmup=0))
    dense_ms, sparse_ms = statistics.median(times["dense"]), statistics.median(times["sparse"])
    case = f"b{batch}-a{active}"
    common = {"case": case, "batch": batch, "seq": SEQ, "d_model": D_MODEL, "d_ff": D_FF}
    return [
        {**common, "variant": "dense", "median_ms": dense_ms, "params": count_parameters(dense),
         "active_fraction": 1.0, "speedup": 1.0},
        {**common, "variant": "sparse", "median_ms": sparse_ms, "params": count_parameters(sparse),
         "active_fraction": round(measured, 4), "speedup": dense_ms / sparse_ms, "n_groups": n_groups},
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (under a minute)")
    parser.add_argument("--out", type=Path, default=Path("results/sparse_ffn.json"), help="JSON output path")
    parser.add_argument("--groups", type=int, default=8, help="neuron groups G of the sparse FFN")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for batch in BATCHES:
        rounds = (30 if batch == 1 else 5) if args.quick else (200 if batch == 1 else 25)
        for active in FRACTIONS:
            rows.extend(measure(batch, active, args.groups, rounds))
    write_results(args.out, rows)
    print_table(rows, ["case", "variant", "median_ms", "speedup", "params", "active_fraction"])
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
