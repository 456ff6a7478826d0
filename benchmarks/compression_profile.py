"""Where the time of a batch-32 forward goes, per variant of benchmarks/compression.py (issue 14).

Loads the saved variants of ``--runs-dir`` (run ``benchmarks/compression.py --phase accuracy`` first),
times one batch-32 forward of real test inputs (median of ``--rounds``) and profiles one more with
``torch.profiler``, grouping the ops into GEMMs (int8 and float), attention, elementwise/norm and the
rest. Run it under the benchmark lock:

    python benchmarks/compression_profile.py --out outputs/compression_profile.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_results  # noqa: E402
from compression import TASKS, _speed_batch  # noqa: E402

from hybridformer.data import load_tokenizer  # noqa: E402
from hybridformer.registry import load_model  # noqa: E402
from hybridformer.recipes.task_data import TaskDataConfig, load_eval_split  # noqa: E402

FOLDERS = {"fp32": "teacher/model", "sparse": "sparse/model", "int8-dynamic": "int8-dynamic",
           "int8-dynamic-unsmoothed": "int8-dynamic-unsmoothed", "int8-sparse": "int8-sparse"}
GROUPS = {  # op name fragment -> group
    "linear_dynamic": "int8 GEMM", "addmm": "float GEMM", "aten::mm": "float GEMM", "aten::bmm": "float GEMM",
    "scaled_dot_product": "attention", "softmax": "attention", "gelu": "elementwise", "layer_norm": "norm",
    "aten::mul": "elementwise", "aten::add": "elementwise", "topk": "gating", "entr": "gating",
    "index": "gather/scatter", "nonzero": "gather/scatter",
}


def _group(name: str) -> str:
    return next((g for k, g in GROUPS.items() if k in name), "other")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-dir", default="outputs/compression")
    parser.add_argument("--tasks", default="sentiment,bbc")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="outputs/compression_profile.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows: list[dict[str, Any]] = []
    for task in args.tasks.split(","):
        root = Path(args.runs_dir) / task
        models = {n: load_model(root / f).eval() for n, f in FOLDERS.items()}
        length = TASKS[task]["max_length"]
        test = load_eval_split(TaskDataConfig(task=task, max_length=length), "test", models["fp32"].label_names)
        inputs = _speed_batch(test, 32, load_tokenizer(str(root / "teacher/model")), length)
        with torch.inference_mode():
            for name, model in models.items():
                model(**inputs)
                times = []
                for _ in range(args.rounds):
                    start = time.perf_counter()
                    model(**inputs)
                    times.append((time.perf_counter() - start) * 1e3)
                with profile(activities=[ProfilerActivity.CPU]) as prof:
                    model(**inputs)
                groups: dict[str, float] = {}
                for event in prof.key_averages():
                    groups[_group(event.key)] = groups.get(_group(event.key), 0.0) + event.self_cpu_time_total / 1e3
                total = sum(groups.values())
                share = {g: round(100 * v / total, 1) for g, v in sorted(groups.items(), key=lambda kv: -kv[1])}
                rows.append({"case": f"{task}-b32", "variant": name, "median_ms": statistics.median(times),
                             "profiled_ms": total, "share_percent": share})
                print(task, name, f"{statistics.median(times):.0f} ms", share, flush=True)
    write_results(args.out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
