"""The multimodal experiment (issue 12): does image-text pretraining of the tiny model help VQA,
retrieval, zero-shot and fine-tuned classification, captioning and video classification?

One command, resumable: every run writes ``<runs>/<case>/<variant>/seed<k>.json`` and is skipped when
that file exists; the pretrained model of seed k is ``<runs>/pretrain/seed<k>/model``. Variants:

- ``pretrained``: ``multimodal_tiny`` pretrained on MNIST-5k image-caption pairs with ITC + ITM
  (hard negatives) + captioning + fused MLM for ``--pretrain-steps`` steps, then (where the case
  trains) fine-tuned for ``--finetune-steps``;
- ``scratch``: the same model randomly initialised, the same fine-tuning budget;
- ``resnet-only`` (image-cls): the same ResNet-18 + head trained alone on the labels, same budget;
- ``chance``: the majority answer (VQA), random similarities (retrieval), 1/classes (zero-shot).

Cases (SPEC §9 rows, ``score_mean`` / ``score_std`` over seeds, fractions): ``vqa-zeroshot``
(generated answers, no VQA training), ``vqa-fewshot`` (answer classifier on ``--fewshot-fraction`` of
the VQA training questions), ``retrieval-r1``/``-r5`` (image<->text, mean of both directions),
``zeroshot-cls`` (text prompts), ``image-cls`` (``--fewshot-fraction`` of the labelled images),
``caption-bleu4``, ``video-cls`` (moving digits' direction). Speed rows: pretraining examples/s of the
tiny model with hybrid vs full decoder self-attention.

    python benchmarks/multimodal_experiment.py --quick        # the quick grid (what results/ holds)
    python benchmarks/multimodal_experiment.py --phase report
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine_info  # noqa: E402

from hybridformer.io import write_json, write_text  # noqa: E402
from hybridformer.recipes.mm_common import MMDataConfig, load_model, tokenizer  # noqa: E402
from hybridformer.recipes.mm_pretrain import MMPretrainConfig, mm_pretrain  # noqa: E402
from hybridformer.recipes.mm_tasks import MMFinetuneConfig, mm_finetune, score  # noqa: E402
from hybridformer.training import TrainConfig  # noqa: E402

OBJECTIVES = ["itc", "itm", "caption", "mlm"]
# case -> (metric task, metric key, variants); fine-tuned cases name their fine-tuning task.
ZERO_SHOT = {
    "vqa-zeroshot": ("vqa-zeroshot", "vqa_accuracy", ["pretrained", "scratch", "chance"]),
    "retrieval-r1": ("retrieval", "r1", ["pretrained", "scratch", "chance"]),
    "retrieval-r5": ("retrieval", "r5", ["pretrained", "scratch", "chance"]),
    "zeroshot-cls": ("zeroshot-classification", "accuracy", ["pretrained", "scratch", "chance"]),
    "caption-bleu4": ("caption", "bleu4", ["pretrained", "scratch"]),
}
FINETUNED = {
    "vqa-fewshot": ("vqa", "vqa_accuracy", ["pretrained", "scratch"]),
    "image-cls": ("image-classification", "accuracy", ["pretrained", "resnet-only"]),
    "video-cls": ("video-classification", "accuracy", ["pretrained", "scratch"]),
}


def _train(args: argparse.Namespace, out: Path, steps: int, seed: int) -> TrainConfig:
    return TrainConfig(lr=args.lr, max_steps=steps, batch_size=args.batch_size, out_dir=str(out), seed=seed,
                       log_every=5, progress_bar=False, tensorboard=False, warmup_ratio=0.1, resume=True)


def _pretrained(args: argparse.Namespace, seed: int) -> Path:
    out = args.runs_dir / "pretrain" / f"seed{seed}"
    if not (out / "metrics.json").is_file():
        mm_pretrain(MMPretrainConfig(objectives=OBJECTIVES, model="tiny", train=_train(args, out, args.pretrain_steps, seed)))
    return out / "model"


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
    for seed in range(args.seeds):
        model_dir = _pretrained(args, seed % args.pretrain_seeds)
        for case, (task, key, variants) in ZERO_SHOT.items():
            for variant in variants:
                def fn(task=task, key=key, variant=variant):
                    torch.manual_seed(seed)
                    model = {"pretrained": lambda: load_model(str(model_dir)), "scratch": lambda: load_model("tiny"),
                             "chance": lambda: None}[variant]()
                    limit = args.gen_limit if task in ("vqa-zeroshot", "caption") else args.eval_limit
                    return {"score": score(task, model, MMDataConfig(seed=0), limit=limit, tok=tok)[key]}
                _run(args.runs_dir / case / variant / f"seed{seed}.json", fn)
        for case, (task, key, variants) in FINETUNED.items():
            for variant in variants:
                def fn(task=task, key=key, variant=variant, case=case):
                    out = args.runs_dir / case / variant / f"seed{seed}"
                    config = MMFinetuneConfig(task=task, model=str(model_dir) if variant == "pretrained" else "tiny",
                                              data=MMDataConfig(train_fraction=args.fewshot_fraction),
                                              eval_limit=args.eval_limit, train=_train(args, out, args.finetune_steps, seed))
                    return {"score": mm_finetune(config).metrics[key]}
                _run(args.runs_dir / case / variant / f"seed{seed}.json", fn)
    del data


def phase_speed(args: argparse.Namespace) -> None:
    for kind in ("hybrid", "full"):
        def fn(kind=kind):
            out = args.runs_dir / "speed" / kind / "run"
            result = mm_pretrain(MMPretrainConfig(objectives=OBJECTIVES, model="tiny", decoder_attention=kind,
                                                  train=_train(args, out, args.speed_steps, 0)))
            return {"examples_per_s": result.examples_per_s, "ms_per_step": 1000 * result.train.train_seconds / result.train.final_step}
        _run(args.runs_dir / "speed" / kind / "seed0.json", fn)


def _collect(args: argparse.Namespace) -> list[dict]:
    rows = []
    for case, (_, _, variants) in {**ZERO_SHOT, **FINETUNED}.items():
        for variant in variants:
            scores = [json.loads(p.read_text())["score"] for p in sorted((args.runs_dir / case / variant).glob("seed*.json"))]
            if scores:
                rows.append({"case": case, "variant": variant, "score_mean": statistics.mean(scores),
                             "score_std": statistics.stdev(scores) if len(scores) > 1 else 0.0, "seeds": len(scores),
                             "median_ms": None})
    for kind in ("hybrid", "full"):
        path = args.runs_dir / "speed" / kind / "seed0.json"
        if path.is_file():
            r = json.loads(path.read_text())
            rows.append({"case": "pretrain-speed", "variant": f"decoder-{kind}", "median_ms": r["ms_per_step"],
                         "examples_per_s": r["examples_per_s"], "batch_size": args.batch_size})
    pre = sorted((args.runs_dir / "pretrain").glob("seed*/metrics.json"))
    if pre:
        m = [json.loads(p.read_text()) for p in pre]
        rows.append({"case": "pretrain-time", "variant": "pretrained", "median_ms": None,
                     "seconds_mean": statistics.mean(r["seconds"] for r in m), "steps": m[0]["steps"],
                     "first_loss": m[0]["first_loss"], "final_loss": m[0]["final_loss"]})
    return rows


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


def phase_report(args: argparse.Namespace) -> None:
    rows = _collect(args)
    machine = machine_info()
    write_json(args.out, {"machine": machine, "budget": _budget(args), "rows": rows})
    _plot(rows, args.out.with_suffix(".png"))
    lines = ["| case | variant | score_mean | score_std | seeds |", "|---|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['variant']} | {r['score_mean']:.4f} | {r['score_std']:.4f} | {r['seeds']} |"
              for r in rows if "score_mean" in r]
    lines += ["", "| speed | ms/step | examples/s |", "|---|---|---|"]
    lines += [f"| {r['variant']} | {r['median_ms']:.0f} | {r['examples_per_s']:.2f} |" for r in rows if r["case"] == "pretrain-speed"]
    write_text(args.out.with_name(args.out.stem + "_table.md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


def _budget(args: argparse.Namespace) -> dict:
    return {k: getattr(args, k) for k in ("seeds", "pretrain_steps", "finetune_steps", "batch_size", "lr",
                                          "pretrain_seeds", "fewshot_fraction", "eval_limit", "gen_limit", "speed_steps")}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--phase", choices=["all", "train", "speed", "report"], default="all")
    p.add_argument("--quick", action="store_true", help="the quick grid (small budget; see results/multimodal.md)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--pretrain-seeds", type=int, default=3, help="pretrained models (fine-tune seed k uses k mod this)")
    p.add_argument("--pretrain-steps", type=int, default=400)
    p.add_argument("--finetune-steps", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--fewshot-fraction", type=float, default=0.1)
    p.add_argument("--eval-limit", type=int, default=500)
    p.add_argument("--gen-limit", type=int, default=200)
    p.add_argument("--speed-steps", type=int, default=10)
    p.add_argument("--runs-dir", type=Path, default=Path("runs/multimodal_experiment"))
    p.add_argument("--out", type=Path, default=Path("results/multimodal.json"))
    if "--quick" in (sys.argv[1:] if argv is None else argv):  # the quick grid's defaults; explicit flags win
        p.set_defaults(pretrain_steps=20, finetune_steps=6, batch_size=16, eval_limit=100, gen_limit=32, speed_steps=2,
                       pretrain_seeds=1)
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    if args.phase in ("all", "speed"):
        phase_speed(args)
    if args.phase in ("all", "train"):
        phase_train(args)
    if args.phase in ("all", "report"):
        phase_report(args)


if __name__ == "__main__":
    main()
