"""The multimodal experiment (issue 12): does image-text pretraining of the tiny model help VQA,
retrieval, zero-shot and fine-tuned classification, captioning and video classification?

One command, resumable: every run writes ``<runs>/<case>/<variant>/seed<k>.json`` and is skipped when
that file exists (a killed run resumes from its last checkpoint); the pretrained model of seed k is
``<runs>/pretrain/seed<k mod --pretrain-seeds>/model``. Variants:

- ``pretrained``: ``multimodal_tiny`` (narrow one-block-per-stage ResNet trunk, no video) pretrained on
  MNIST-5k image-caption pairs with ``--objectives`` (default ITC + captioning: the budget of a 2-core
  shared machine; ``itm`` and ``mlm`` are available) for ``--pretrain-steps`` (the decoder's
  cross-attention gates at ``--gate-lr-multiplier`` times the lr), then (where the case trains)
  fine-tuned for ``--finetune-steps``; a runs folder keeps one pretraining budget (``budget.json``);
- ``scratch``: the same model randomly initialised, the same fine-tuning budget;
- ``resnet-only`` (image-cls): the same image trunk + head trained alone on the labels, same budget;
- ``chance``: the majority answer (VQA), random similarities (retrieval), 1/classes (zero-shot).

Cases (SPEC §9 rows, ``score_mean`` / ``score_std`` over seeds, fractions): ``vqa-zeroshot``
(generated answers, no VQA training), ``vqa-fewshot`` (answer classifier on ``--fewshot-fraction`` of
the VQA training questions), ``retrieval-r1``/``-r5`` (image<->text, mean of both directions),
``zeroshot-cls`` (text prompts), ``image-cls`` (``--fewshot-fraction`` of the labelled MNIST images:
confounded, the MNIST captions name the digit), ``image-cls-transfer`` (the same on Fashion-MNIST,
whose classes the pretraining captions never name), ``caption-bleu4``, ``video-cls`` (moving digits'
direction). Speed rows (``--phase speed``, run alone on the machine): the median pretraining step of the
tiny model (all four objectives) with hybrid vs full decoder self-attention; ``--phase demo``: the wall
time of the demo pretraining (the ``pretrained`` recipe, one seed).

    nice -n 19 python benchmarks/multimodal_experiment.py --phase train     # the grid (results/multimodal.md)
    python benchmarks/multimodal_experiment.py --phase speed
    python benchmarks/multimodal_experiment.py --phase demo
    python benchmarks/multimodal_experiment.py --phase report               # json, _table.md, png
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine_info, time_median  # noqa: E402

from hybridformer.io import write_json, write_text  # noqa: E402
from hybridformer.recipes.multimodal_common import MMDataConfig, load_model, tokenizer  # noqa: E402
from hybridformer.recipes.multimodal_pretrain import MMPretrainConfig, mm_pretrain  # noqa: E402
from hybridformer.recipes.multimodal_tasks import MMFinetuneConfig, VQAAnswerConfig, mm_finetune, score  # noqa: E402
from hybridformer.training import TrainConfig  # noqa: E402

SPEED_OBJECTIVES = ["itc", "itm", "caption", "mlm"]  # the speed rows time all four
# case -> (metric task, metric key, variants); fine-tuned cases name their fine-tuning task.
ZERO_SHOT = {
    "vqa-zeroshot": ("vqa-zeroshot", "vqa_accuracy", ["pretrained", "scratch", "chance"]),
    "vqa-zeroshot-rank": ("vqa-zeroshot", "vqa_accuracy", ["pretrained", "scratch", "chance"]),
    "retrieval-r1": ("retrieval", "r1", ["pretrained", "scratch", "chance"]),
    "retrieval-r5": ("retrieval", "r5", ["pretrained", "scratch", "chance"]),
    "zeroshot-cls": ("zeroshot-classification", "accuracy", ["pretrained", "scratch", "chance"]),
    "caption-bleu4": ("caption", "bleu4", ["pretrained", "scratch"]),
}
FINETUNED = {
    "vqa-fewshot": ("vqa", "vqa_accuracy", ["pretrained", "scratch"]),
    "image-cls": ("image-classification", "accuracy", ["pretrained", "resnet-only"]),
    "image-cls-transfer": ("image-classification", "accuracy", ["pretrained", "resnet-only"]),
    "video-cls": ("video-classification", "accuracy", ["pretrained", "scratch"]),
    "vqa-fewshot-long": ("vqa", "vqa_accuracy", ["pretrained", "scratch"]),  # --long-finetune-steps
    "vqa-fewshot-rank": ("vqa", "vqa_accuracy", ["pretrained", "scratch"]),
    "vqa-fewshot-rank-long": ("vqa", "vqa_accuracy", ["pretrained", "scratch"]),
}


def _vqa(case: str) -> VQAAnswerConfig:
    """``*-rank*`` cases answer by ranking the answer vocabulary (fine-tuned: the decoder trained on the
    answers); the others as before (generated answers zero-shot, the answer classifier fine-tuned)."""
    return VQAAnswerConfig("rank" if "-rank" in case else "auto")


def _train(args: argparse.Namespace, out: Path, steps: int, seed: int, lr: float | None = None) -> TrainConfig:
    return TrainConfig(lr=lr or args.lr, max_steps=steps, batch_size=args.batch_size, out_dir=str(out), seed=seed,
                       log_every=5, progress_bar=False, tensorboard=False, warmup_ratio=0.1, resume=True,
                       save_every=args.save_every, keep_checkpoints=False)


def _steps(args: argparse.Namespace, case: str) -> int:
    """Fine-tuning steps of ``case``: ``--long-finetune-steps`` for vqa-fewshot-long, else ``--finetune-steps``."""
    return args.long_finetune_steps if case.endswith("-long") else args.finetune_steps


def _pretrained(args: argparse.Namespace, seed: int) -> Path:
    """The pretrained model of ``seed`` (trained once); a folder pretrained under another budget is an error."""
    out = args.runs_dir / "pretrain" / f"seed{seed}"
    budget = {k: getattr(args, k) for k in ("objectives", "pretrain_steps", "pretrain_lr", "gate_lr_multiplier", "batch_size")}
    stamp = out / "budget.json"
    if stamp.is_file() and json.loads(stamp.read_text()) != budget:
        raise SystemExit(f"{out}: pretrained under {json.loads(stamp.read_text())}, not this run's {budget}; "
                         "use another --runs-dir")
    if not (out / "metrics.json").is_file():
        train = _train(args, out, args.pretrain_steps, seed, args.pretrain_lr)
        if args.gate_lr_multiplier != 1:
            train.lr_multipliers = {"cross_attention.gate": args.gate_lr_multiplier}
        mm_pretrain(MMPretrainConfig(objectives=args.objectives, model="tiny", train=train))
        write_json(stamp, budget)
    return out / "model"


def _rank_details(model, tok, limit: int, task: str) -> dict:
    """Ranked answers of ``model`` on the ``limit`` test questions the rows score (spread over the split)
    under both scorings: accuracy per answer type and the answers picked per answer type."""
    from collections import Counter

    from hybridformer.evaluation.vqa import vqa_accuracy
    from hybridformer.recipes import multimodal_metrics as mm
    from hybridformer.recipes.multimodal_common import task_data

    train, test, collate, extra = task_data("vqa", MMDataConfig(seed=0), tok)
    examples = {e.question_id: e for e in (test[i] for i in mm.spread(len(test), limit))}
    allowed = VQAAnswerConfig("rank").allowed_answers(task, train)  # the candidates the row's score used
    types = {q: e.answer_type for q, e in examples.items()}
    out = {}
    for name, reference in (("likelihood", None), ("pmi", mm.reference_context(train, collate, VQAAnswerConfig().reference_images))):
        model.eval()
        picked = mm.vqa_ranked_answers(model, test, collate, tok, extra["answers"], limit=limit, reference=reference,
                                       allowed=allowed)
        acc = vqa_accuracy(picked, {q: list(e.answers) for q, e in examples.items()}, types)
        out[name] = {"accuracy": acc.overall, "per_answer_type": acc.per_answer_type,
                     "picks": {t: dict(Counter(picked[q] for q in picked if types[q] == t).most_common())
                               for t in sorted(set(types.values()))}}
    return out


def _data(case: str, **kw) -> MMDataConfig:
    """image-cls-transfer fine-tunes and scores on Fashion-MNIST: labels the MNIST captions never name."""
    return MMDataConfig(task="fashion-mnist" if case == "image-cls-transfer" else "mnist5k", **kw)


def _run(path: Path, fn) -> dict:
    if path.is_file():
        return json.loads(path.read_text())
    start = time.time()
    record = {**fn(), "seconds": time.time() - start}
    write_json(path, record)
    print(f"{path}: {record}", flush=True)
    return record


def phase_train(args: argparse.Namespace) -> None:
    tok = tokenizer()
    data = MMDataConfig()
    for seed in args.only_seeds or range(args.seeds):
        model_dir = _pretrained(args, seed % args.pretrain_seeds)
        for case, (task, key, variants) in ZERO_SHOT.items():
            if args.cases and case not in args.cases:
                continue
            for variant in variants:
                def fn(task=task, key=key, variant=variant, case=case):
                    torch.manual_seed(seed)
                    model = {"pretrained": lambda: load_model(str(model_dir)), "scratch": lambda: load_model("tiny"),
                             "chance": lambda: None}[variant]()
                    generated = task == "caption" or (task == "vqa-zeroshot" and "-rank" not in case)
                    limit = args.gen_limit if generated else args.eval_limit  # ranking is cheap: eval_limit
                    record = {"score": score(task, model, MMDataConfig(seed=0), limit=limit, tok=tok, vqa=_vqa(case))[key]}
                    if "-rank" in case and model is not None:
                        record["details"] = _rank_details(model, tok, args.eval_limit, task)
                    return record
                _run(args.runs_dir / case / variant / f"seed{seed}.json", fn)
        for case, (task, key, variants) in FINETUNED.items():
            if args.cases and case not in args.cases:
                continue
            for variant in variants:
                def fn(task=task, key=key, variant=variant, case=case):
                    out = args.runs_dir / case / variant / f"seed{seed}"
                    config = MMFinetuneConfig(task=task, model=str(model_dir) if variant == "pretrained" else "tiny",
                                              data=_data(case, train_fraction=args.fewshot_fraction),
                                              eval_limit=args.eval_limit, vqa=_vqa(case),
                                              train=_train(args, out, _steps(args, case), seed))
                    result = mm_finetune(config)
                    record = {"score": result.metrics[key]}
                    if "-rank" in case:
                        record["details"] = _rank_details(load_model(str(result.model_dir)), tok, args.eval_limit, task)
                    return record
                _run(args.runs_dir / case / variant / f"seed{seed}.json", fn)
    del data


def phase_speed(args: argparse.Namespace) -> None:
    """Median wall time of one pretraining step (all four objectives, forward + backward + AdamW) of the
    tiny model, hybrid vs full decoder self-attention; run it with nothing else running."""
    from hybridformer.losses import LossOutput  # noqa: F401  (the objective's output type)
    from hybridformer.recipes.multimodal_common import task_data
    from hybridformer.recipes.multimodal_pretrain import build_pretrain_objective

    tok = tokenizer()
    train, _, collate, _ = task_data("pretrain", MMDataConfig(), tok)
    batch = collate([train[i] for i in range(args.batch_size)])
    for kind in ("hybrid", "full"):
        def fn(kind=kind):
            torch.manual_seed(0)
            model = load_model("tiny", decoder_attention=kind)
            objective = build_pretrain_objective(SPEED_OBJECTIVES, tok)
            optimizer = torch.optim.AdamW([*model.parameters(), *objective.parameters()], lr=1e-4)

            def step():
                optimizer.zero_grad(set_to_none=True)
                objective(model, batch).loss.backward()
                optimizer.step()
            load_before = os.getloadavg()
            ms = time_median(step, repeats=args.speed_steps, warmup=1)
            return {"median_ms": ms, "examples_per_s": args.batch_size / (ms / 1000), "load_before": load_before,
                    "load_after": os.getloadavg()}
        _run(args.runs_dir / "speed" / kind / "seed0.json", fn)


def phase_demo(args: argparse.Namespace) -> None:
    """Wall time of the demo pretraining (the experiment's `pretrained` recipe, one seed, model saved);
    run it with nothing else running."""
    def fn():
        out = args.runs_dir / "demo" / "run"
        shutil.rmtree(out, ignore_errors=True)
        start = time.time()
        result = mm_pretrain(MMPretrainConfig(objectives=args.objectives, model="tiny",
                                              train=_train(args, out, args.pretrain_steps, 0, args.pretrain_lr)))
        return {"wall_s": time.time() - start, "train_s": result.train.train_seconds, "steps": result.train.final_step,
                "examples_per_s": result.examples_per_s, "load_after": os.getloadavg()}
    _run(args.runs_dir / "demo" / "seed0.json", fn)


def _cases(args: argparse.Namespace) -> list[str]:
    """The cases of the grid, or those ``--cases`` names."""
    return [case for case in {**ZERO_SHOT, **FINETUNED} if not args.cases or case in args.cases]


def _expected(args: argparse.Namespace) -> list[tuple[str, str]]:
    return [(case, variant) for case, (_, _, variants) in {**ZERO_SHOT, **FINETUNED}.items() for variant in variants
            if case in _cases(args)]


def _collect(args: argparse.Namespace) -> tuple[list[dict], list[str]]:
    """The rows of every finished run, and ``case/variant/seed`` of the runs of the grid not (yet) run."""
    rows, not_run = [], []
    for case, variant in _expected(args):
        folder = args.runs_dir / case / variant
        scores = [json.loads((folder / f"seed{k}.json").read_text())["score"] for k in range(args.seeds)
                  if (folder / f"seed{k}.json").is_file()]
        not_run += [f"{case}/{variant}/seed{k}" for k in range(args.seeds) if not (folder / f"seed{k}.json").is_file()]
        if scores:
            rows.append({"case": case, "variant": variant, "score_mean": statistics.mean(scores),
                         "score_std": statistics.stdev(scores) if len(scores) > 1 else 0.0, "seeds": len(scores),
                         "scores": scores, "median_ms": None})
            records = [json.loads((folder / f"seed{k}.json").read_text()) for k in range(args.seeds)
                       if (folder / f"seed{k}.json").is_file()]
            if any("details" in r for r in records):  # ranked rows: both scorings, per seed
                rows[-1]["details"] = [r.get("details") for r in records]
    for kind in ("hybrid", "full"):
        path = args.runs_dir / "speed" / kind / "seed0.json"
        if path.is_file():
            r = json.loads(path.read_text())
            rows.append({"case": "pretrain-speed", "variant": f"decoder-{kind}", "median_ms": r["median_ms"],
                         "examples_per_s": r["examples_per_s"], "batch_size": args.batch_size,
                         "objectives": SPEED_OBJECTIVES, "load_before": r["load_before"], "load_after": r["load_after"]})
        elif not args.cases:
            not_run.append(f"pretrain-speed/decoder-{kind}")
    demo = args.runs_dir / "demo" / "seed0.json"
    if demo.is_file():
        r = json.loads(demo.read_text())
        rows.append({"case": "pretrain-demo-time", "variant": "pretrained", "median_ms": None, "wall_s": r["wall_s"],
                     "train_s": r["train_s"], "steps": r["steps"], "examples_per_s": r["examples_per_s"],
                     "objectives": args.objectives, "load_after": r["load_after"]})
    elif not args.cases:
        not_run.append("pretrain-demo-time")
    cli = args.runs_dir / "demo" / "cli.json"  # the CLI's default pretraining, timed by hand (see multimodal.md)
    if cli.is_file():
        rows.append({"case": "pretrain-demo-cli-time", "variant": "pretrained", "median_ms": None,
                     **json.loads(cli.read_text())})
    pre = [json.loads(p.read_text()) for p in sorted((args.runs_dir / "pretrain").glob("seed*/metrics.json"))]
    if pre:
        rows.append({"case": "pretrain-grid-time", "variant": "pretrained", "median_ms": None,
                     "seconds_mean": statistics.mean(r["seconds"] for r in pre), "steps": pre[0]["steps"],
                     "seeds": len(pre), "first_loss": [r["first_loss"] for r in pre],
                     "final_loss": [r["final_loss"] for r in pre]})
    return rows, not_run


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = [r for r in rows if "score_mean" in r]
    cases = list(dict.fromkeys(r["case"] for r in scored))
    variants = ["pretrained", "scratch", "resnet-only", "chance"]
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.2
    for j, v in enumerate(variants):
        xs = [i + (j - 1.5) * width for i, c in enumerate(cases) for r in scored if r["case"] == c and r["variant"] == v]
        ys = [r["score_mean"] for c in cases for r in scored if r["case"] == c and r["variant"] == v]
        es = [r["score_std"] for c in cases for r in scored if r["case"] == c and r["variant"] == v]
        if xs:
            ax.bar(xs, ys, width, yerr=es, label=v, capsize=2)
    ax.set_xticks(range(len(cases)), cases, rotation=20)
    ax.set_ylabel("score (fraction)")
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title("tiny multimodal model: pretrained vs scratch vs chance (mean ± std over seeds)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


NOTE = ("Scores were trained and evaluated at nice 19 on 2 CPU cores shared with 5 other agents (load 10-35). "
        "Speed and demo-time rows were measured under the exclusive bench lock at normal priority while other "
        "work ran at nice 19 (the load average above counts it).")
"""The report's default note: how the grid in results/multimodal.md was measured."""

TARGETS = [  # (case, variant, reference variant, factor, offset): met when variant >= factor * ref + offset
    ("vqa-zeroshot", "pretrained", "scratch", 1.18, 0.0),
    ("vqa-fewshot", "pretrained", "scratch", 1.18, 0.0),
    ("vqa-fewshot-long", "pretrained", "scratch", 1.18, 0.0),
    ("vqa-zeroshot-rank", "pretrained", "scratch", 1.18, 0.0),
    ("vqa-zeroshot-rank", "pretrained", "chance", 1.0, 0.0),
    ("vqa-fewshot-rank", "pretrained", "scratch", 1.18, 0.0),
    ("vqa-fewshot-rank-long", "pretrained", "scratch", 1.18, 0.0),
    ("retrieval-r1", "pretrained", "chance", 3.0, 0.0),
    ("zeroshot-cls", "pretrained", "chance", 3.0, 0.0),
    ("image-cls", "pretrained", "resnet-only", 1.0, 0.028),
    ("image-cls-transfer", "pretrained", "resnet-only", 1.0, 0.028),
]


def _targets(rows: list[dict], cases: list[str]) -> list[str]:
    score = {(r["case"], r["variant"]): r for r in rows if "score_mean" in r}
    lines = []
    for case, variant, ref, factor, offset in TARGETS:
        if case not in cases:
            continue
        a, b = score.get((case, variant)), score.get((case, ref))
        if a is None or b is None:
            lines.append(f"- {case}: not run")
            continue
        need = factor * b["score_mean"] + offset
        verdict = "**met**" if a["score_mean"] >= need and a["score_mean"] > 0 else "**missed**"
        rule = f"{factor:g} × {ref}" if offset == 0 else f"{ref} + {offset:g}"
        lines.append(f"- {case}: {variant} {a['score_mean']:.3f} ± {a['score_std']:.3f} vs {ref} "
                     f"{b['score_mean']:.3f} ± {b['score_std']:.3f}; target ≥ {rule} = {need:.3f}: {verdict}")
    return lines


def phase_report(args: argparse.Namespace) -> None:
    rows, not_run = _collect(args)
    machine = machine_info()
    write_json(args.out, {"machine": machine, "budget": _budget(args), "note": args.note, "rows": rows, "not_run": not_run})
    _plot(rows, args.out.with_suffix(".png"))
    variants = ["pretrained", "scratch", "resnet-only", "chance"]
    cell = {(r["case"], r["variant"]): f"{r['score_mean']:.3f} ± {r['score_std']:.3f} (n={r['seeds']})"
            for r in rows if "score_mean" in r}
    lines = ["| case | " + " | ".join(variants) + " |", "|---" * (len(variants) + 1) + "|"]
    lines += [f"| {case} | " + " | ".join(cell.get((case, v), "") for v in variants) + " |"
              for case in _cases(args)]
    speed = [f"| {r['variant']} | {r['median_ms']:.0f} | {r['examples_per_s']:.2f} |" for r in rows if r["case"] == "pretrain-speed"]
    if speed:
        lines += ["", f"| pretraining step (all four objectives, batch {args.batch_size}) | median ms | examples/s |",
                  "|---|---|---|", *speed]
    lines += ["", "Targets (the article's claims), computed from the rows:", "", *_targets(rows, _cases(args))]
    if not_run:
        lines += ["", f"Not run: {', '.join(not_run)}"]
    table = "\n".join(lines) + "\n"
    write_text(args.out.with_name(args.out.stem + "_table.md"), table)
    print(table)


def _budget(args: argparse.Namespace) -> dict:
    return {k: getattr(args, k) for k in ("objectives", "seeds", "pretrain_steps", "pretrain_lr", "gate_lr_multiplier", "finetune_steps", "long_finetune_steps", "batch_size", "lr",
                                          "pretrain_seeds", "fewshot_fraction", "eval_limit", "gen_limit", "speed_steps", "threads")}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--phase", choices=["all", "train", "speed", "demo", "report"], default="all")
    p.add_argument("--quick", action="store_true", help="the quick grid (small budget; see results/multimodal.md)")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--cases", type=lambda s: s.split(","), default=None,
                   help="train / report only these cases (comma-separated, e.g. vqa-zeroshot-rank,vqa-fewshot-rank)")
    p.add_argument("--only-seeds", type=lambda s: [int(k) for k in s.split(",")], default=None,
                   help="train only these seeds (e.g. 2 or 0,1: to run seeds in parallel processes)")
    p.add_argument("--pretrain-seeds", type=int, default=5, help="pretrained models (fine-tune seed k uses k mod this)")
    p.add_argument("--objectives", type=lambda s: s.split(","), default=["itc", "caption"],
                   help="pretraining objectives of the `pretrained` variant (comma-separated)")
    p.add_argument("--pretrain-steps", type=int, default=100)
    p.add_argument("--pretrain-lr", type=float, default=1e-3)
    p.add_argument("--gate-lr-multiplier", type=float, default=1.0,
                   help="pretraining lr factor of the decoder's cross-attention gates (train.lr_multipliers "
                        "cross_attention.gate): they start at 0 and at the base lr barely open in a short run")
    p.add_argument("--finetune-steps", type=int, default=40)
    p.add_argument("--long-finetune-steps", type=int, default=150, help="fine-tuning steps of vqa-fewshot-long")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-4, help="fine-tuning learning rate")
    p.add_argument("--save-every", type=int, default=25, help="checkpoint period (resume within a run)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 wastes least on a contended machine)")
    p.add_argument("--fewshot-fraction", type=float, default=0.1)
    p.add_argument("--eval-limit", type=int, default=200)
    p.add_argument("--gen-limit", type=int, default=48)
    p.add_argument("--speed-steps", type=int, default=5, help="timed pretraining steps per speed row (after 1 warm-up)")
    p.add_argument("--runs-dir", type=Path, default=Path("runs/multimodal_experiment"))
    p.add_argument("--note", default=NOTE, help="how the rows were measured (the report's note)")
    p.add_argument("--out", type=Path, default=Path("results/multimodal.json"))
    if "--quick" in (sys.argv[1:] if argv is None else argv):  # the quick grid's defaults; explicit flags win
        p.set_defaults(pretrain_steps=20, finetune_steps=6, long_finetune_steps=12, batch_size=16, eval_limit=100, gen_limit=32, speed_steps=2,
                       pretrain_seeds=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.phase in ("all", "speed"):
        phase_speed(args)
    if args.phase in ("all", "demo"):
        phase_demo(args)
    if args.phase in ("all", "train"):
        phase_train(args)
    if args.phase in ("all", "report"):
        phase_report(args)


if __name__ == "__main__":
    main()
