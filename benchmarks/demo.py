"""`make demo`: the whole system on the bundled data, phase by phase, through the `hybridformer` CLI.

Each phase runs existing commands in subprocesses (so it shows exactly what a user would type), then
turns their output files into SPEC §9 rows. The rows, the machine and each phase's wall time go to
`<out>/results.json`; `hybridformer report <out>` renders `report.md` and the plots; the driver ends
with the summary table and the commands that serve the trained models.

    python benchmarks/demo.py                       # every phase, outputs in outputs/demo/
    python benchmarks/demo.py --phases sentiment int8

Before each phase a line says what it does and roughly how long it takes (`estimate_s`: its wall
time in a `make demo` from a fresh clone on 2 quiet AMD EPYC cores, about 8 minutes in all).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from _common import write_results

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CAPTION_IMAGES = 4
"""Held-out mnist5k test images the multimodal phase captions."""


@dataclass
class Phase:
    """One step of the demo."""

    name: str
    """Short name (``--phases`` picks by it)."""
    what: str
    """One line saying what the phase does, printed before it runs."""
    estimate_s: float
    """Rough wall time on this 2-core machine (printed before the phase runs)."""
    commands: Callable[[Path], list[list[str]]]
    """The command lines to run, given the output folder (``hybridformer`` is the venv's binary)."""
    collect: Callable[[Path, list[str], list[str]], list[dict[str, Any]]]
    """Rows from the phase's outputs, given the output folder, its shell-quoted commands and what each
    printed on stdout."""


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _size(folder: Path) -> int:
    """Bytes of the weight files of a saved model folder."""
    return sum(p.stat().st_size for p in folder.glob("*.safetensors")) or sum(
        p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _rel(out: Path, path: Path) -> str:
    return str(path.relative_to(out))


def _sentiment_commands(out: Path) -> list[list[str]]:
    # The separate `evaluate` times inference in a fresh process, as int8's and the student's are.
    return [["hybridformer", "finetune", "--config", "configs/finetune_sentiment.yaml", "--out-dir", str(out / "sentiment")],
            ["hybridformer", "evaluate", "--model-dir", str(out / "sentiment" / "model"), "--out-dir", str(out / "sentiment" / "eval")]]


def _sentiment_rows(out: Path, commands: list[str], stdouts: list[str]) -> list[dict[str, Any]]:
    train = _json(out / "sentiment" / "metrics.json")["train"]
    test = _json(out / "sentiment" / "eval" / "metrics.json")
    return [{"case": "sentiment", "variant": "fp32 hybrid", "accuracy": test["accuracy"], "macro_f1": test["macro_f1"],
             "tokens_per_s": test["tokens_per_s"], "size_bytes": _size(out / "sentiment" / "model"),
             "train_tokens_per_s": train["tokens_per_s"], "log": "sentiment/log.jsonl",
             "outputs": "sentiment/model", "command": " && ".join(commands)}]


def _int8_commands(out: Path) -> list[list[str]]:
    return [["hybridformer", "quantize", "--model", str(out / "sentiment" / "model"), "--out", str(out / "sentiment" / "int8")],
            ["hybridformer", "evaluate", "--model-dir", str(out / "sentiment" / "int8"), "--out-dir", str(out / "sentiment" / "int8-eval")]]


def _int8_rows(out: Path, commands: list[str], stdouts: list[str]) -> list[dict[str, Any]]:
    m = _json(out / "sentiment" / "int8-eval" / "metrics.json")
    return [{"case": "sentiment", "variant": "int8", "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
             "tokens_per_s": m["tokens_per_s"], "size_bytes": _size(out / "sentiment" / "int8"),
             "outputs": "sentiment/int8", "command": " && ".join(commands)}]


def _student_commands(out: Path) -> list[list[str]]:
    return [["hybridformer", "distill", "--teacher", str(out / "sentiment" / "model"), "--data.task", "sentiment",
             "--data.train_subset", "2000", "--out-dir", str(out / "student")]]


def _student_rows(out: Path, commands: list[str], stdouts: list[str]) -> list[dict[str, Any]]:
    test = _json(out / "student" / "metrics.json")["student"]["test"]
    return [{"case": "sentiment", "variant": "student (half depth)", "accuracy": test["accuracy"],
             "macro_f1": test["macro_f1"], "tokens_per_s": test["tokens_per_s"], "size_bytes": _size(out / "student" / "model"),
             "log": "student/log.jsonl", "outputs": "student/model", "command": commands[0]}]


def _mm_commands(out: Path) -> list[list[str]]:
    model = str(out / "mm" / "model")
    images = _write_caption_images(out / "mm" / "images")
    evaluate = [["hybridformer", "evaluate", "--task", task, "--model", model, "--data.task", "mnist5k",
                 "--out", str(out / "mm" / f"{task}.json")] for task in ("zeroshot-classification", "retrieval")]
    generate = [["hybridformer", "generate", "--model", model, "--image", str(image), "--prompt", ""] for image in images]
    return [["hybridformer", "pretrain", "--objectives", "mlm,itc,itm,caption", "--model", "tiny",
             "--data.task", "mnist5k", "--out-dir", str(out / "mm")], *evaluate, *generate]


def _write_caption_images(folder: Path) -> list[Path]:
    """Held-out (test) mnist5k images of different digits as PNG files, for `generate` to caption."""
    from PIL import Image

    from hybridformer.data import load_image_text

    folder.mkdir(parents=True, exist_ok=True)
    paths, seen = [], set()
    for example in load_image_text("mnist5k").test:
        if example.label_name in seen:
            continue
        seen.add(example.label_name)
        path = folder / f"{len(paths)}-digit-{example.label_name}.png"
        pixels = example.image.permute(1, 2, 0).squeeze(-1).numpy()  # (C, H, W) -> (H, W) for one channel
        Image.fromarray(pixels).resize((112, 112)).save(path)
        paths.append(path)
        if len(paths) == CAPTION_IMAGES:
            break
    return paths


def _mm_rows(out: Path, commands: list[str], stdouts: list[str]) -> list[dict[str, Any]]:
    mm = out / "mm"
    pretrain = _json(mm / "metrics.json")
    zero_shot = _json(mm / "zeroshot-classification.json")["metrics"]
    retrieval = _json(mm / "retrieval.json")["metrics"]
    rows = [
        {"case": "multimodal", "variant": "tiny pretrain (mlm+itc+itm+caption)", "loss": pretrain.get("final_loss"),
         "examples_per_s": pretrain.get("examples_per_s"), "log": "mm/log.jsonl", "outputs": "mm/model", "command": commands[0]},
        {"case": "multimodal", "variant": "zero-shot digit classification", "zero_shot_accuracy": zero_shot["accuracy"],
         "outputs": "mm/zeroshot-classification.json", "command": commands[1]},
        {"case": "multimodal", "variant": "retrieval R@1 (image<->text)", "r_at_1": retrieval["r1"],
         "outputs": "mm/retrieval.json", "command": commands[2]},
    ]
    # Image files are named "<index>-digit-<label>.png": sorted, they are in the order they were captioned.
    for image, command, printed in zip(sorted((mm / "images").glob("*.png")), commands[3:], stdouts[3:]):
        caption = printed.strip().splitlines()[-1] if printed.strip() else ""
        rows.append({"case": "caption", "variant": image.stem, "image": _rel(out, image), "caption": caption,
                     "command": command})
    return rows


VQA_QUESTIONS = 200
"""Held-out mnist5k VQA questions the ranked zero-shot VQA phase scores (``--vqa-questions``)."""


def _vqa_commands(out: Path) -> list[list[str]]:
    return [["hybridformer", "evaluate", "--task", "vqa-zeroshot", "--vqa.answer", "rank", "--model", str(out / "mm" / "model"),
             "--data.task", "mnist5k", "--eval_limit", str(VQA_QUESTIONS), "--out", str(out / "mm" / "vqa-rank.json")]]


def _vqa_rows(out: Path, commands: list[str], stdouts: list[str]) -> list[dict[str, Any]]:
    metrics = _json(out / "mm" / "vqa-rank.json")["metrics"]
    return [{"case": "multimodal", "variant": f"zero-shot VQA, ranked ({VQA_QUESTIONS} questions)",
             "vqa_accuracy": metrics["vqa_accuracy"], "outputs": "mm/vqa-rank.json", "command": commands[0]}]


def _encoder_commands(out: Path) -> list[list[str]]:
    return [[str(BIN / "python"), "benchmarks/encoder.py", "--quick", "--out", str(out / "encoder.json")]]


def _encoder_rows(out: Path, commands: list[str], stdouts: list[str]) -> list[dict[str, Any]]:
    keep = ("case", "variant", "median_ms", "tokens_per_s", "peak_mb", "selection", "note")
    return [{**{k: r[k] for k in keep if k in r}, "outputs": "encoder.json", "command": commands[0]}
            for r in _json(out / "encoder.json")["rows"]]


BBC_TRAIN = ["--data.train_subset", "320", "--data.max_length", "256", "--data.eval_subset", "50", "--train.lr", "3e-4"]
"""The demo's BBC budget: one epoch over 320 articles cut to 256 tokens, at 3x the config's learning rate."""
BBC_TEST = ["--max_positions", "2048", "--data.max_length", "2048", "--data.eval_subset", "100"]
"""The test: 100 whole test articles (20 a topic; none is over 2,048 tokens), positions extended by copying."""


def _bbc_commands(out: Path) -> list[list[str]]:
    commands = []
    for kind in ("hybrid", "full"):
        # The config trains the hybrid layer's scorer at 100x the rate; full attention has no scorer.
        plain = ["--train.lr_multipliers", "{}"] if kind == "full" else []
        commands.append(["hybridformer", "finetune", "--config", "configs/finetune_bbc.yaml", "--model.attention.kind",
                         kind, *plain, *BBC_TRAIN, "--out-dir", str(out / f"bbc-{kind}")])
        commands.append(["hybridformer", "evaluate", "--model-dir", str(out / f"bbc-{kind}" / "model"), *BBC_TEST,
                         "--out-dir", str(out / f"bbc-{kind}" / "test-2048")])
    return commands


def _bbc_rows(out: Path, commands: list[str], stdouts: list[str]) -> list[dict[str, Any]]:
    rows = []
    for i, kind in enumerate(("hybrid", "full")):
        m = _json(out / f"bbc-{kind}" / "test-2048" / "metrics.json")
        rows.append({"case": "bbc-2048", "variant": kind, "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
                     "tokens_per_s": m["tokens_per_s"], "peak_mb": round(m["peak_memory_mb"], 1),
                     "eval_examples": m["n_examples"], "log": f"bbc-{kind}/log.jsonl",
                     "outputs": f"bbc-{kind}/model", "command": f"{commands[2 * i]} && {commands[2 * i + 1]}"})
    return rows


PHASES = [
    Phase("sentiment", "fine-tune the bundled MiniLM with hybrid attention on movie-review sentiment, evaluate",
          75, _sentiment_commands, _sentiment_rows),
    Phase("bbc", "BBC news articles: fine-tune hybrid and full attention briefly at 256 tokens, test both on whole "
          "articles up to 2,048 tokens (accuracy, tokens/s)", 180, _bbc_commands, _bbc_rows),
    Phase("int8", "int8-quantize the sentiment model, evaluate it (size, accuracy, speed)", 15, _int8_commands, _int8_rows),
    Phase("student", "distill the sentiment model into a half-depth student", 50, _student_commands, _student_rows),
    Phase("multimodal", "pretrain the tiny image-text model on MNIST digits (contrastive, matching, captioning, MLM), "
          "then zero-shot classification, retrieval and captions of held-out images", 120, _mm_commands, _mm_rows),
    Phase("vqa", "zero-shot VQA on held-out digits, answers ranked by PMI among those the question's type takes", 20,
          _vqa_commands, _vqa_rows),
    Phase("encoder", "whole-encoder speed at 4,096 and 8,192 tokens: hybrid vs full attention vs Longformer", 40,
          _encoder_commands, _encoder_rows),
]


def _run(command: list[str], log: Path) -> str:
    """Run one command from the repository root, its output appended to `log`; returns its stdout."""
    argv = [str(BIN / "hybridformer"), *command[1:]] if command[0] == "hybridformer" else command
    with log.open("a") as f:
        f.write(f"$ {shlex.join(command)}\n")
        f.flush()
        done = subprocess.run(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=f, text=True)
        f.write(done.stdout)
    if done.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        raise RuntimeError(f"`{shlex.join(command)}` failed (exit {done.returncode}); end of {log}:\n{tail}")
    return done.stdout


def _selected(names: list[str] | None) -> list[Phase]:
    if names:
        unknown = sorted(set(names) - {p.name for p in PHASES})
        if unknown:
            raise SystemExit(f"--phases: unknown {unknown}; choose from {[p.name for p in PHASES]}")
        return [p for p in PHASES if p.name in names]
    return list(PHASES)


def main() -> int:
    global VQA_QUESTIONS  # read by the vqa phase's command and row
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "demo", help="output folder (outputs/demo)")
    parser.add_argument("--phases", nargs="*", help=f"run only these ({', '.join(p.name for p in PHASES)})")
    parser.add_argument("--vqa-questions", type=int, default=VQA_QUESTIONS, help="questions the vqa phase scores")
    args = parser.parse_args()
    VQA_QUESTIONS = args.vqa_questions
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    phases = _selected(args.phases)
    print(f"demo: {len(phases)} phases, about {sum(p.estimate_s for p in phases) / 60:.0f} min on 2 cores; "
          f"outputs in {out}, each command's own output in {out / 'demo.log'}", flush=True)
    rows, timings, start = [], [], time.perf_counter()
    for i, phase in enumerate(phases, 1):
        print(f"[{i}/{len(phases)}] {phase.name}: {phase.what} (~{phase.estimate_s / 60:.1f} min)", flush=True)
        began, load = time.perf_counter(), os.getloadavg()[0]
        commands = phase.commands(out)
        stdouts = [_run(command, out / "demo.log") for command in commands]
        seconds = time.perf_counter() - began
        shown = str(out.relative_to(ROOT)) if out.is_relative_to(ROOT) else str(out)
        quoted = [shlex.join(c).replace(str(out), shown).replace(str(BIN) + "/", "") for c in commands]
        rows.extend(phase.collect(out, quoted, stdouts))
        timings.append({"phase": phase.name, "seconds": round(seconds, 1), "estimate_s": phase.estimate_s,
                        "load_average_at_start": load})
        print(f"    done in {seconds:.0f} s", flush=True)
        # Written after every phase: a later phase's failure keeps the earlier ones' results.
        write_results(out / "results.json", rows, phases=timings, total_seconds=round(time.perf_counter() - start, 1))
    total = time.perf_counter() - start
    write_results(out / "results.json", rows, phases=timings, total_seconds=round(total, 1))
    _run(["hybridformer", "report", str(out)], out / "demo.log")
    from hybridformer.evaluation.report import summary_table

    print()
    print(summary_table(rows))
    print(f"\ndemo finished in {total / 60:.1f} min (load average now {os.getloadavg()[0]:.1f}); "
          f"report: {out / 'report.md'}, plots: {out / 'plots'}/")
    served = [f"--model {out / d / 'model'}" for d in ("sentiment", "mm") if (out / d / "model").is_dir()]
    if served:
        print(f"serve the trained models: hybridformer serve {' '.join(served)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
