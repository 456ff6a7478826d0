"""The text commands end to end: real runs of ``hybridformer.cli.main`` on tiny budgets, and bad input."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hybridformer.cli import main
from hybridformer.config import load_config
from hybridformer.data import load_builtin, load_tokenizer, minilm_path, minilm_tokenizer
from hybridformer.encoders import TextEncoder
from hybridformer.models import TextClassifier, TextForMaskedLM
from hybridformer.recipes import FinetuneConfig, FinetuneResult, finetune

# Tiny budgets: 32 examples, 32 tokens, 2 optimizer steps; no TensorBoard files.
TINY = [
    "--data.train_subset", "32", "--data.eval_subset", "32", "--data.max_length", "32",
    "--train.max_steps", "2", "--train.batch_size", "8", "--train.tensorboard", "false",
    "--train.progress_bar", "false",
]
HYBRID_GATED = [
    "--model.attention.kind", "hybrid", "--model.attention.window", "16", "--model.attention.global_k", "8",
    "--model.sparsity.enabled", "true", "--model.sparsity.anneal_steps", "2",
    "--prune.enabled", "true", "--prune.target_removed", "0.3", "--prune.calibration_batches", "2",
    "--gate_distill.enabled", "true",
]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory: pytest.TempPathFactory) -> FinetuneResult:
    """A hybrid-attention, gated, distilled (in place), pruned sentiment classifier fine-tuned for 2 steps.

    Built by the recipe the command runs (``test_finetune_prints_where_outputs_went`` runs the
    command itself), so the trained model is at hand to compare with what was saved.
    """
    out = tmp_path_factory.mktemp("finetune")
    return finetune(load_config(FinetuneConfig, None, ["--train.out_dir", str(out), *TINY, *HYBRID_GATED]))


def test_finetune_writes_model_metrics_and_prunes(finetuned: FinetuneResult) -> None:
    out = finetuned.model_dir.parent
    metrics = json.loads(finetuned.metrics_path.read_text())
    for split in ("validation", "test"):
        assert 0.0 <= metrics[split]["accuracy"] <= 1.0
        assert metrics[split]["n_examples"] == 32
        assert metrics[split]["tokens_per_s"] > 0
        assert 0.0 <= metrics["unpruned"][split]["accuracy"] <= 1.0
    assert metrics["train"]["steps"] == 2 and math.isfinite(metrics["train"]["final_loss"])
    assert metrics["prune"]["ffn_params_removed"] >= 0.3
    assert metrics["config"]["gate_distill"]["enabled"] is True
    # The saved model is the pruned one: its FFN parameter count is the report's "after".
    model = TextClassifier.from_pretrained(finetuned.model_dir)
    ffn = sum(p.numel() for b in model.encoder.blocks for p in b.ffn.parameters())
    assert ffn == metrics["ffn_params"] == metrics["prune"]["ffn_params_after"]
    assert model.encoder.config.attention.kind == "hybrid" and model.label_names == ["rotten", "fresh"]
    assert (out / "model" / "tokenizer.json").is_file()
    assert (out / "log.jsonl").is_file() and (out / "finetune_config.yaml").is_file()


def test_finetune_prints_where_outputs_went(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "finetune", "--out-dir", str(tmp_path), *TINY, "--train.max_steps", "1",
                           "--eval_splits", "test")
    assert code == 0
    assert f"model saved to {tmp_path / 'model'}" in out
    assert f"metrics written to {tmp_path / 'metrics.json'}" in out
    assert not (tmp_path / "checkpoints").exists()  # a fine-tune deletes them once the model is saved
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics) >= {"test", "train", "ffn_params", "config"} and "validation" not in metrics
    assert metrics["prune"] is None


def test_the_example_configs_fine_tune_then_compress(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """configs/finetune_bbc.yaml, then configs/compress_bbc.yaml on what it saved (tiny budgets)."""
    base, small = tmp_path / "base", tmp_path / "small"
    tiny = [*TINY, "--train.max_steps", "1", "--eval_splits", "test", "--data.eval_batch_size", "16"]
    code, _, _ = run_cli(capsys, "finetune", "--config", str(CONFIGS / "finetune_bbc.yaml"), "--out-dir", str(base),
                         *tiny)
    assert code == 0
    model = str(base / "model")
    code, out, _ = run_cli(
        capsys, "finetune", "--config", str(CONFIGS / "compress_bbc.yaml"), "--out-dir", str(small), *tiny,
        "--model.init_from", model, "--gate_distill.teacher", model, "--prune.calibration_batches", "2",
    )
    assert code == 0, out
    metrics = json.loads((small / "metrics.json").read_text())
    assert metrics["prune"]["ffn_params_removed"] >= 0.3
    assert metrics["config"]["gate_distill"]["teacher"] == model
    compressed = TextClassifier.from_pretrained(small / "model")
    original = TextClassifier.from_pretrained(base / "model")
    assert compressed.label_names == original.label_names and compressed.encoder.config.attention.kind == "hybrid"
    assert not torch.equal(compressed.head.out_proj.weight, original.head.out_proj.weight)  # trained further


def test_evaluate_reproduces_finetune_accuracy(finetuned: FinetuneResult, capsys: pytest.CaptureFixture[str]) -> None:
    """Reloading from disk and evaluating again gives the accuracy finetune measured in memory."""
    out_dir = finetuned.model_dir.parent / "eval"
    # No --data.task / --data.max_length: the settings recorded in the model folder (sentiment, 32 tokens).
    code, out, _ = run_cli(capsys, "evaluate", "--model-dir", str(finetuned.model_dir), "--data.eval_subset", "32",
                           "--out-dir", str(out_dir))
    assert code == 0 and f"metrics (confusion matrix included) written to {out_dir / 'metrics.json'}" in out
    evaluated = json.loads((out_dir / "metrics.json").read_text())
    expected = json.loads(finetuned.metrics_path.read_text())["test"]
    assert evaluated["task"] == "sentiment" and evaluated["max_length"] == 32
    for key in ("accuracy", "n_tokens", "macro_f1", "per_class", "confusion"):
        assert evaluated[key] == expected[key], key
    assert evaluated["tokens_per_s"] > 0 and evaluated["peak_memory_mb"] > 0
    # The predictions file agrees with the scores: recount accuracy and the confusion matrix from it.
    rows = [json.loads(line) for line in (out_dir / "predictions.jsonl").read_text().splitlines()]
    names = evaluated["label_names"]
    assert len(rows) == 32 and len({r["id"] for r in rows}) == 32
    assert sum(r["label"] == r["prediction"] for r in rows) / 32 == evaluated["accuracy"]
    counts = [[sum(r["label"] == a and r["prediction"] == b for r in rows) for b in names] for a in names]
    assert counts == evaluated["confusion"]
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-4 and
               max(r["probabilities"], key=r["probabilities"].get) == r["prediction"] for r in rows)
    assert (out_dir / "confusion.png").read_bytes()[:4] == b"\x89PNG"


def test_saved_model_reloads_with_identical_logits(finetuned: FinetuneResult) -> None:
    reloaded = TextClassifier.from_pretrained(finetuned.model_dir).eval()
    batch = minilm_tokenizer()(["a gripping, funny film", "dull and far too long"], padding=True,
                               return_tensors="pt")
    with torch.no_grad():
        expected = finetuned.model(**batch).logits
        got = reloaded(**batch).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_evaluate_user_file_and_unknown_label(finetuned: FinetuneResult, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    test = load_builtin("sentiment").test
    good = tmp_path / "reviews.csv"
    with good.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["review", "verdict"])
        for i in range(12):
            writer.writerow([test.texts[i], test.label_names[test.labels[i]]])
    code, out, _ = run_cli(capsys, "evaluate", "--model-dir", str(finetuned.model_dir), "--data.task", "file",
                           "--data.test_file", str(good), "--data.text_column", "review",
                           "--data.label_column", "verdict", "--data.max_length", "32")
    assert code == 0
    # By default the results go beside the model folder, not inside it.
    report = json.loads((finetuned.model_dir.parent / "eval_file_test" / "metrics.json").read_text())
    assert report["n_examples"] == 12 and 0.0 <= report["accuracy"] <= 1.0
    assert not list(finetuned.model_dir.glob("eval*"))

    bad = tmp_path / "bad.csv"
    bad.write_text("review,verdict\nfine film,so-so\n")
    code, _, err = run_cli(capsys, "evaluate", "--model-dir", str(finetuned.model_dir), "--data.task", "file",
                           "--data.test_file", str(bad), "--data.text_column", "review",
                           "--data.label_column", "verdict")
    assert code == 1 and "'so-so'" in err and "not seen in training" in err


def test_train_tokenizer_then_pretrain_from_scratch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(load_builtin("sentiment").train.texts[:400]) + "\n")
    code, out, _ = run_cli(capsys, "train-tokenizer", "--corpus.source", "file", "--corpus.file", str(corpus),
                           "--vocab_size", "600", "--out-dir", str(tmp_path / "bpe"))
    assert code == 0 and f"tokenizer saved to {tmp_path / 'bpe'}" in out
    tokenizer = load_tokenizer(tmp_path / "bpe")
    assert len(tokenizer) == 600
    text = "An unexpectedly moving film."
    assert tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True) == text

    code, out, _ = run_cli(
        capsys, "pretrain", "--objectives", "mlm", "--model.tokenizer", str(tmp_path / "bpe"),
        "--corpus.source", "file", "--corpus.file", str(corpus), "--corpus.max_documents", "64",
        "--model.scratch.d_model", "32", "--model.scratch.n_layers", "1", "--model.scratch.n_heads", "2",
        "--model.scratch.d_ff", "64", "--model.scratch.attention.window", "16", "--model.attention.window", "8",
        "--model.attention.global_k", "4", "--max_length", "32",
        "--train.max_steps", "3", "--train.batch_size", "8", "--train.tensorboard", "false",
        "--out-dir", str(tmp_path / "mlm"),
    )
    assert code == 0 and f"model saved to {tmp_path / 'mlm' / 'model'}" in out
    metrics = json.loads((tmp_path / "mlm" / "metrics.json").read_text())
    # A fresh model scores every token about equally: the first MLM loss is close to ln(vocab).
    assert abs(metrics["first_loss"] - math.log(600)) < 0.5
    assert metrics["steps"] == 3 and math.isfinite(metrics["final_loss"])
    encoder = TextEncoder.from_pretrained(tmp_path / "mlm" / "model")
    assert encoder.config.vocab_size == 600 and encoder.config.attention.kind == "hybrid"
    assert encoder.config.attention.window == 8  # --model.attention.* changes a new encoder too
    ids = load_tokenizer(tmp_path / "mlm" / "model")(["a film"], return_tensors="pt")["input_ids"]
    assert encoder(ids).last_hidden_state.shape == (1, ids.shape[1], 32)


def test_pretrain_continues_from_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(
        capsys, "pretrain", "--objectives", "mlm", "--model.init_from", str(minilm_path()),
        "--model.attention.kind", "hybrid", "--model.attention.window", "8", "--model.attention.global_k", "2",
        "--corpus.source", "sentiment", "--corpus.max_documents", "8", "--max_length", "16",
        "--train.max_steps", "1", "--train.batch_size", "4", "--train.tensorboard", "false",
        "--out-dir", str(tmp_path),
    )
    assert code == 0
    model = TextForMaskedLM.from_pretrained(tmp_path / "model")
    assert model.encoder.config.n_layers == 6 and model.encoder.config.d_model == 384
    assert model.encoder.config.attention.kind == "hybrid" and model.encoder.config.attention.window == 8
    assert (tmp_path / "model" / "vocab.txt").is_file() or (tmp_path / "model" / "tokenizer.json").is_file()


@pytest.mark.parametrize(
    ("argv", "code", "needles"),
    [
        (["finetune", "--train.lrr", "1"], 2, ["train.lrr", "unknown field of TrainConfig"]),
        (["finetune", "--model.attention.windw", "64"], 2, ["model.attention.windw", "unknown field"]),
        (["finetune", "--model.sparsity.n_groups", "many"], 2, ["model.sparsity.n_groups", "integer"]),
        (["finetune", "--prune.enabled", "true"], 2, ["prune.enabled", "model.sparsity.enabled"]),
        (["finetune", "--config", "no/such.yaml"], 2, ["config file not found", "no/such.yaml"]),
        (["finetune", "--data.task", "file", "--data.train_file", "no/such.csv"], 1, ["no such file", "no/such.csv"]),
        (["finetune", "--model.init_from", "no/such/model", *TINY], 1, ["checkpoint folder not found"]),
        (["evaluate"], 2, ["--model-dir", "is required"]),
        (["evaluate", "--model-dir", "no/such/model"], 1, ["checkpoint folder not found", "no/such/model"]),
        (["pretrain", "--objectives", "mlm,xyz"], 2, ["objectives", "unknown objective 'xyz'", "mlm"]),
        (["pretrain", "--corpus.source", "file", "--corpus.file", "no/such.txt"], 1, ["corpus.file", "no such file"]),
        (["train-tokenizer", "--vocab_size", "100"], 2, ["vocab_size", "must exceed 261"]),
    ],
)
def test_bad_input_gives_one_line_error(argv: list[str], code: int, needles: list[str],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    got, out, err = run_cli(capsys, *argv)
    assert got == code
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    for needle in needles:
        assert needle in err


def test_console_script_reports_unknown_objective() -> None:
    script = Path(sys.executable).parent / "hybridformer"
    proc = subprocess.run(
        [str(script), "pretrain", "--objectives", "contrastive"], capture_output=True, text=True, timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 2
    assert "unknown objective 'contrastive'" in proc.stderr and "supports: mlm" in proc.stderr


CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize(
    "name", ["finetune_sentiment.yaml", "finetune_bbc.yaml", "compress_bbc.yaml", "pretrain_mlm.yaml"]
)
def test_example_configs_load(name: str) -> None:
    from hybridformer.recipes import PretrainConfig

    cls = PretrainConfig if name.startswith("pretrain") else FinetuneConfig
    config = load_config(cls, CONFIGS / name, ["--train.lr", "3e-5"])
    assert config.train.lr == 3e-5
    if name == "finetune_bbc.yaml":
        assert not config.model.gates().enabled and config.model.attention.kind == "hybrid"
        assert config.train.out_dir == "runs/finetune_bbc"
    if name == "compress_bbc.yaml":
        # It compresses what finetune_bbc.yaml saves.
        assert config.model.init_from == config.gate_distill.teacher == "runs/finetune_bbc/model"
        assert config.prune.enabled and config.model.gates().enabled and config.model.gates().top_g == 11
        assert config.gate_distill.enabled
        assert config.train.lr_multipliers == {"attention.pooled": 100.0, "ffn.gate": 100.0}
