"""Compression (issue 14, SPEC §8): int8, int8 with pruned gated FFNs, and a distilled half-depth student.

Cases ``<task>-b<batch>`` (``sentiment-b1``, ``sentiment-b32``, ``bbc-b1``, ``bbc-b32``); variants:

- ``fp32`` = ``teacher``: MiniLM (6 blocks) fine-tuned on the task (three epochs on sentiment's 2,000
  reviews, one on BBC's 400 articles; ``teacher`` is the same model, measured again as the student's
  reference);
- ``int8-weight``: fp32 with int8 weights (torchao weight-only), float compute;
- ``int8-dynamic``: fp32 with int8 weights and activations (torch.ao dynamic, the default backend),
  after SmoothQuant smoothing (alpha 0.8, calibrated on 8 training batches: ``hybridformer quantize``'s
  default), q/k/v fused into one int8 layer and o_proj's smoothing scale folded into v (also defaults;
  ``fp32`` keeps three q/k/v projections); ``int8-dynamic-unsmoothed``: the same without smoothing;
  ``int8-dynamic-torchao``: torchao's Int8DynamicActivationInt8WeightConfig (per-token activations,
  no compile), unsmoothed;
- ``sparse``: the teacher compressed with gated FFNs (16 groups; 4 open per token trained 2 epochs on
  sentiment, 2 open trained 4 epochs on BBC, on the teacher's predictions) and pruned to as many
  groups per layer as a token opens, those the tokens open most (75% / 87.5% of the FFN parameters
  removed), fp32;
- ``int8-sparse``: ``sparse`` quantized like ``int8-dynamic`` (its gated FFNs use the int8 group kernel);
  ``int8-sparse-unsmoothed``: the same without smoothing (whose input products cost a few percent at b32);
- ``student``: 3 blocks (the teacher's 0, 2, 4) distilled from the teacher (T=2, half labels,
  hidden-state cosine; one epoch on sentiment, three on BBC's 400 articles); ``student-labels``: the
  same student trained on the labels alone with the same budget (what distillation must beat).

Fields: ``median_ms`` (one forward of a batch of real test inputs at the training length, variants
interleaved in rotating order, median over rounds; ``int8-dynamic-torchao`` in 3 calls after them),
``size_bytes`` (the saved weights file), ``params`` (stored weight elements), ``accuracy`` (the whole
test split, ``test_examples`` of them, the same for both batch sizes), ``agreement`` (share of test
predictions equal to fp32's), ``speedup`` (fp32's time over the variant's, median over rounds of the
two timed in the same round; ``speedup_quartiles``: first and third quartile of those ratios).
Models are trained once into ``--runs-dir`` and reused.
Timing runs with ``--allocator retain`` by default (:mod:`hybridformer.compression.cpu_memory`: freed
activations stay in the heap instead of page-faulting afresh at every op, the same for every variant;
recorded as ``allocator`` in the JSON).

Two phases, so the timing can run alone under the benchmark lock while training and accuracy do not:
``--phase accuracy`` trains what is missing, quantizes and evaluates (written to
``<runs-dir>/accuracy.json``); ``--phase timing`` loads the saved variants, times them and writes the
rows with the accuracies of the first phase; ``--phase all`` (default) does both.

    nice -n 19 python benchmarks/compression.py --phase accuracy
    python benchmarks/compression.py --quick --phase timing \
        --out results/compression_quick.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_info, print_table, write_results  # noqa: E402

from hybridformer.config import apply_overrides  # noqa: E402
from hybridformer.data import TextCollator, iterate_batches, load_tokenizer  # noqa: E402
from hybridformer.compression import quantize  # noqa: E402
from hybridformer.compression.cpu_memory import retain_freed_memory  # noqa: E402
from hybridformer.recipes.quantize import smoothing_batches as calibration_batches  # noqa: E402
from hybridformer.recipes.distill import DistillConfig, distill  # noqa: E402
from hybridformer.model_folder import WEIGHTS_FILE  # noqa: E402
from hybridformer.registry import load_model, save_model  # noqa: E402
from hybridformer.models import TextClassifier  # noqa: E402
from hybridformer.recipes import FinetuneConfig, finetune  # noqa: E402
from hybridformer.recipes.task_data import TaskDataConfig, load_eval_split  # noqa: E402

TASKS = {  # training budget per task (small subsets: the whole sets take hours on 2 cores)
    "sentiment": {"train_subset": 2000, "max_length": 64, "batch_size": 16, "teacher_epochs": 3, "student_epochs": 1,
                  "sparse_open": 4, "sparse_epochs": 2, "sparse_hidden": 0.0},
    "bbc": {"train_subset": 400, "max_length": 128, "batch_size": 8, "teacher_epochs": 1, "student_epochs": 3,
            "sparse_open": 2, "sparse_epochs": 4, "sparse_hidden": 1.0},
}
"""``teacher_epochs``, ``student_epochs``: epochs over ``train_subset``; ``sparse_open``: neuron groups (of
:data:`SPARSE_GROUPS`) a token opens, and pruning keeps as many per layer; ``sparse_epochs`` over
``train_subset`` (the sparse model learns the teacher's predictions, not the labels);
``sparse_hidden``: weight of its block-output term against the teacher's (``gate_distill.hidden_weight``)."""
SPARSE_GROUPS = 16
VARIANTS = (
    "fp32", "int8-weight", "int8-dynamic", "int8-dynamic-unsmoothed", "int8-dynamic-torchao", "sparse", "int8-sparse",
    "int8-sparse-unsmoothed", "teacher", "student", "student-labels",
)
SMOOTH = 0.8
"""SmoothQuant alpha of the smoothed variants (``hybridformer quantize``'s default)."""
QUANTIZED = {  # variant: (float source, mode, backend, smoothed)
    "int8-weight": ("fp32", "weight", None, False),
    "int8-dynamic": ("fp32", "dynamic", None, True),
    "int8-dynamic-unsmoothed": ("fp32", "dynamic", None, False),
    "int8-dynamic-torchao": ("fp32", "dynamic", "torchao", False),
    "int8-sparse": ("sparse", "dynamic", None, True),
    "int8-sparse-unsmoothed": ("sparse", "dynamic", None, False),
}
TIMED_APART = {"int8-dynamic-torchao"}
"""Variants timed after the interleaved rounds (torchao without compile: 25x slower than fp32 here)."""
QUIET = ["--train.tensorboard", "false", "--train.progress_bar", "false"]


def _data_args(task: str) -> list[str]:
    b = TASKS[task]
    return ["--data.task", task, "--data.train_subset", str(b["train_subset"]), "--data.max_length",
            str(b["max_length"]), "--train.batch_size", str(b["batch_size"]), "--train.lr", "1e-4", *QUIET]


def train_models(task: str, runs: Path) -> dict[str, Path]:
    """Fine-tune the teacher, then the sparse model and the two students from it (skipping saved ones)."""
    root = runs / task
    dirs = {name: root / name / "model" for name in ("teacher", "sparse", "student", "student-labels")}
    common = [*_data_args(task), "--eval_splits", "test", "--data.eval_subset", "64", "--train.keep_checkpoints", "false"]
    if not (dirs["teacher"] / WEIGHTS_FILE).is_file():
        epochs = ["--train.epochs", str(TASKS[task]["teacher_epochs"])]
        finetune(apply_overrides(FinetuneConfig(), [*common, *epochs, "--train.out_dir", str(root / "teacher")]))
    teacher = str(dirs["teacher"])
    if not (dirs["sparse"] / WEIGHTS_FILE).is_file():
        b = TASKS[task]
        groups, opened = SPARSE_GROUPS, b["sparse_open"]
        gated = [
            "--model.init_from", teacher, "--model.sparsity.enabled", "true", "--model.sparsity.n_groups", str(groups),
            "--model.sparsity.target_active", str(opened / groups), "--model.sparsity.inference", "top_g",
            "--model.sparsity.top_g", str(opened), "--model.sparsity.tau_end", "0.2", "--model.sparsity.anneal_steps",
            str(-(-b["train_subset"] // b["batch_size"])), "--gate_distill.enabled", "true",
            "--gate_distill.teacher", teacher, "--prune.enabled", "true", "--prune.target_removed",
            str(1 - opened / groups), "--train.warmup_ratio", "0.1", "--train.epochs", str(b["sparse_epochs"]),
            "--gate_distill.hidden_weight", str(b["sparse_hidden"]),
        ]
        config = apply_overrides(FinetuneConfig(), [*common, *gated, "--train.out_dir", str(root / "sparse")])
        config.train.lr_multipliers = {"ffn.gate": 100.0}  # the gates start from scratch
        finetune(config)
    for name, terms in (("student", []), ("student-labels", ["--label_weight", "1", "--hidden_weight", "0"])):
        if not (dirs[name] / WEIGHTS_FILE).is_file():
            args = [*_data_args(task), *terms, "--teacher", teacher, "--train.out_dir", str(root / name),
                    "--evaluate_teacher", "false", "--data.eval_subset", "64",
                    "--train.epochs", str(TASKS[task]["student_epochs"])]
            distill(apply_overrides(DistillConfig(), args))
    return dirs


def _stored_params(path: Path) -> int:
    """Weight elements in a safetensors file (int8 scales, zero points and smoothing scales not counted)."""
    with safe_open(str(path), "pt") as f:
        return sum(
            math.prod(f.get_slice(k).get_shape())
            for k in f.keys()
            if not k.endswith((".scale", ".zero_point", ".input_scale"))
        )


def build_variants(task: str, dirs: dict[str, Path], runs: Path, quantize_again: set[str]) -> dict[str, dict[str, Any]]:
    """Each variant's model (eval mode) and its saved weights file; the int8 ones named in
    ``quantize_again`` or not saved yet are quantized and saved, then all are loaded from their
    folders (as ``hybridformer evaluate`` would)."""
    out: dict[str, dict[str, Any]] = {}
    for name, source in (("fp32", "teacher"), ("teacher", "teacher"), ("sparse", "sparse"), ("student", "student"),
                         ("student-labels", "student-labels")):
        out[name] = {"model": TextClassifier.from_pretrained(dirs[source]).eval(), "file": dirs[source] / WEIGHTS_FILE}
    data = TaskDataConfig(task=task, max_length=TASKS[task]["max_length"], train_subset=TASKS[task]["train_subset"])
    for name, (source, mode, backend, smoothed) in QUANTIZED.items():
        folder = runs / task / name
        if name in quantize_again or not (folder / WEIGHTS_FILE).is_file():
            calibration = calibration_batches(data, load_tokenizer(str(dirs["teacher"]))) if smoothed else None
            model = quantize(out[source]["model"], mode, backend, smooth=SMOOTH if smoothed else None,
                             calibration=calibration)
            save_model(model, folder)
        # Measure the model as loaded from its folder: what `hybridformer evaluate` runs.
        out[name] = {"model": load_model(folder).eval(), "file": folder / WEIGHTS_FILE}
    return out


@torch.inference_mode()
def _test_logits(model: Any, test: Any, collate: Any) -> torch.Tensor:
    """(n_test, labels) logits over the test split in fixed batches of 32 (per-tensor int8 depends on
    what shares a batch, so every variant sees the same batches)."""
    picks = [list(range(i, min(i + 32, len(test)))) for i in range(0, len(test), 32)]
    keys = ("input_ids", "attention_mask")
    return torch.cat([model(**{k: b[k] for k in keys}).logits for b in iterate_batches(test, collate, picks)])


def measure_accuracy(task: str, variants: dict[str, dict[str, Any]], teacher_dir: Path, names: list[str],
                     known: dict[str, Any] | None = None) -> dict[str, Any]:
    """Test accuracy of the variants ``names`` on the whole test split and their agreement with fp32's
    predictions, added to the scores ``known`` of an earlier run (fp32 is evaluated again)."""
    length = TASKS[task]["max_length"]
    test = load_eval_split(TaskDataConfig(task=task, max_length=length), "test", variants["fp32"]["model"].label_names)
    collate = TextCollator(load_tokenizer(str(teacher_dir)), max_length=length)
    labels = torch.tensor([test[i].label for i in range(len(test))])
    predictions = {n: _test_logits(variants[n]["model"], test, collate).argmax(-1) for n in ["fp32", *(n for n in names if n != "fp32")]}
    known = known or {"accuracy": {}, "agreement": {}}
    return {
        "test_examples": len(test),
        "accuracy": {**known["accuracy"], **{n: float((p == labels).float().mean()) for n, p in predictions.items()}},
        "agreement": {**known["agreement"], **{n: float((p == predictions["fp32"]).float().mean())
                                               for n, p in predictions.items()}},
    }


def _speed_batch(test: Any, batch: int, tokenizer: Any, length: int) -> dict[str, torch.Tensor]:
    """The first ``batch`` test examples, padded to the training length (fixed shapes)."""
    enc = tokenizer([test[i].text for i in range(batch)], padding="max_length", truncation=True,
                    max_length=length, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"].bool()}


def measure_task(task: str, variants: dict[str, dict[str, Any]], teacher_dir: Path, rounds: int,
                 names: list[str], scores: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of ``task``: latency at batch 1 and 32 with variants interleaved, with the accuracies ``scores``.

    ``speedup`` is the median over rounds of fp32's time over the variant's in the same round (a slow
    drift of the machine's speed cancels), ``speedup_quartiles`` its first and third quartile. The
    variants of :data:`TIMED_APART` (tens of seconds a call) are timed after the rounds, in 3 calls
    of their own, against fp32's median: inside the rounds they would stretch each one to
    half a minute and let the drift back in.
    """
    length = TASKS[task]["max_length"]
    test = load_eval_split(TaskDataConfig(task=task, max_length=length), "test", variants["fp32"]["model"].label_names)
    tokenizer = load_tokenizer(str(teacher_dir))
    rows = []
    together = [n for n in names if n not in TIMED_APART]
    apart = [n for n in names if n in TIMED_APART]
    for batch in (1, 32):
        inputs = _speed_batch(test, batch, tokenizer, length)
        times: dict[str, list[float]] = {n: [] for n in names}

        def call(n: str) -> None:
            start = time.perf_counter()
            variants[n]["model"](**inputs)
            times[n].append((time.perf_counter() - start) * 1e3)

        with torch.inference_mode():
            for n in names:  # warm-up: first calls allocate and pick kernels
                variants[n]["model"](**inputs)
            for r in tqdm(range(rounds), desc=f"{task}-b{batch} rounds", leave=False):
                for n in together[r % len(together):] + together[: r % len(together)]:  # rotate who goes first
                    call(n)
            for n in apart:
                for _ in range(3):
                    call(n)
        base = statistics.median(times["fp32"])
        for n in names:
            # fp32's time over the variant's: fp32's in the same round, or fp32's median for those apart.
            reference = [base] * len(times[n]) if n in TIMED_APART else times["fp32"]
            q1, speedup, q3 = statistics.quantiles([b / t for b, t in zip(reference, times[n])], n=4)
            rows.append({
                "case": f"{task}-b{batch}", "variant": n, "median_ms": statistics.median(times[n]),
                "speedup": speedup, "speedup_quartiles": [q1, q3], "rounds": len(times[n]),
                "size_bytes": variants[n]["file"].stat().st_size, "params": _stored_params(variants[n]["file"]),
                "accuracy": scores["accuracy"][n], "agreement": scores["agreement"][n],
                "test_examples": scores["test_examples"], "seq_len": length, "batch": batch,
            })
    return rows


def check_targets(rows: list[dict[str, Any]]) -> list[str]:
    """The issue's targets, each with its measured figure and met / missed."""
    by = {(r["case"], r["variant"]): r for r in rows}
    lines = []

    def add(text: str, value: float, ok: bool) -> None:
        lines.append(f"{text}: {value:.3g} - {'met' if ok else 'MISSED'}")

    for task in sorted({r["case"].rsplit("-b", 1)[0] for r in rows}):
        b32 = lambda v: by[(f"{task}-b32", v)]  # noqa: E731
        fp32 = b32("fp32")
        for v in ("int8-weight", "int8-dynamic", "int8-sparse"):
            add(f"{task}: {v} file / fp32 file <= 0.27", b32(v)["size_bytes"] / fp32["size_bytes"],
                b32(v)["size_bytes"] <= 0.27 * fp32["size_bytes"])
        for v in ("int8-weight", "int8-dynamic", "int8-dynamic-unsmoothed"):
            drop = 100 * (fp32["accuracy"] - b32(v)["accuracy"])
            add(f"{task}: {v} accuracy drop <= 1 point", drop, drop <= 1.0)
        for v in ("int8-dynamic", "int8-dynamic-unsmoothed"):  # smoothing's products cost ~4%: both are listed
            add(f"{task}: {v} >= 1.5x fp32 at b32", b32(v)["speedup"], b32(v)["speedup"] >= 1.5)
        for v in ("int8-sparse", "int8-sparse-unsmoothed"):
            add(f"{task}: {v} >= 2.5x fp32 at b32", b32(v)["speedup"], b32(v)["speedup"] >= 2.5)
            drop = 100 * (fp32["accuracy"] - b32(v)["accuracy"])
            add(f"{task}: {v} accuracy drop <= 1.5 points", drop, drop <= 1.5)
        kept = b32("student")["accuracy"] / b32("teacher")["accuracy"]
        add(f"{task}: student keeps >= 97% of the teacher's accuracy", 100 * kept, kept >= 0.97)
        speed = b32("teacher")["median_ms"] / b32("student")["median_ms"]
        add(f"{task}: student >= 1.8x the teacher at b32", speed, speed >= 1.8)
        gain = 100 * (b32("student")["accuracy"] - b32("student-labels")["accuracy"])
        add(f"{task}: distilled student minus the same student without teacher (points, > 0)", gain, gain > 0)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="11 latency rounds instead of 21 (models are trained once, then reused)")
    parser.add_argument("--phase", default="all", choices=("accuracy", "timing", "all"),
                        help="accuracy: train, quantize, evaluate (run it at nice 19); timing: time the saved "
                             "variants (under the benchmark lock); all: both")
    parser.add_argument("--out", default="outputs/compression.json", help="JSON results path (timing phase)")
    parser.add_argument("--runs-dir", default="outputs/compression", help="where the trained models are kept")
    parser.add_argument("--tasks", default="sentiment,bbc", help="comma-separated tasks")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: a loaded 2-core machine makes 2-thread timings erratic)")
    parser.add_argument("--missing-only", action="store_true",
                        help="accuracy phase: evaluate (and quantize) only the variants without scores yet")
    parser.add_argument("--variants", default=None,
                        help="accuracy phase: comma-separated variants to evaluate (and quantize); default all")
    parser.add_argument("--scores", action="append", default=None, metavar="PATH",
                        help="accuracy file(s): written by the accuracy phase (the first), merged for the timing "
                             "phase (default <runs-dir>/accuracy.json)")
    parser.add_argument("--allocator", default="retain", choices=("retain", "default"),
                        help="retain: keep freed memory for reuse (compression.cpu_memory; no page faults on fresh "
                             "activations, for every variant alike); default: glibc's own thresholds")
    parser.add_argument("--note", default="", help="a note stored in the results (e.g. the load during the run)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    allocator = "retain" if args.allocator == "retain" and retain_freed_memory() else "default"
    runs = Path(args.runs_dir)
    tasks = args.tasks.split(",")
    for task in tasks:
        if task not in TASKS:
            parser.error(f"--tasks: unknown task {task!r} (known: {', '.join(TASKS)})")
    paths = [Path(p) for p in args.scores] if args.scores else [runs / "accuracy.json"]
    scores_path = paths[0]
    scores: dict[str, Any] = {}
    for path in reversed(paths):  # the first file wins
        for task, found in (json.loads(path.read_text()) if path.is_file() else {}).items():
            merged = scores.setdefault(task, {"test_examples": found["test_examples"], "accuracy": {}, "agreement": {}})
            merged["accuracy"].update(found["accuracy"])
            merged["agreement"].update(found["agreement"])
    chosen = VARIANTS if args.variants is None else tuple(args.variants.split(","))
    unknown = set(chosen) - set(VARIANTS)
    if unknown:
        parser.error(f"--variants: unknown {sorted(unknown)} (known: {', '.join(VARIANTS)})")
    rounds = 11 if args.quick else 21
    rows: list[dict[str, Any]] = []
    for task in tasks:
        dirs = train_models(task, runs)
        todo = list(chosen)
        if args.missing_only and task in scores:
            todo = [n for n in chosen if n not in scores[task]["accuracy"]]
        variants = build_variants(task, dirs, runs, quantize_again=set() if args.phase == "timing" else set(todo))
        if args.phase != "timing":
            keep = args.missing_only or args.variants is not None
            scores[task] = measure_accuracy(task, variants, dirs["teacher"], todo, scores.get(task) if keep else None)
            scores_path.write_text(json.dumps(scores, indent=1))
            print(task, json.dumps(scores[task]))
        if args.phase != "accuracy":
            if task not in scores:
                parser.error(f"--phase timing: no accuracies of {task} in {scores_path}; run --phase accuracy first")
            rows += measure_task(task, variants, dirs["teacher"], rounds, list(VARIANTS), scores[task])
    if args.phase == "accuracy":
        return 0
    targets = check_targets(rows)
    budget = {t: {**TASKS[t], "test_examples": scores[t]["test_examples"]} for t in tasks}
    write_results(args.out, rows, budget=budget, targets=targets, quick=args.quick, allocator=allocator,
                  note=args.note)
    print_table(rows, ["case", "variant", "median_ms", "speedup", "size_bytes", "params", "accuracy"])
    print("\n".join(targets))
    print(f"load average at the end: {machine_info().get('load_average')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
