"""Trainer: exact resume, NaN stop, gradient accumulation, set_step hooks, logs and results."""

from __future__ import annotations

import json

import pytest
import torch

from hybridformer.config import ConfigError
from hybridformer.losses import ClassificationObjective, LossOutput, MLMObjective
from hybridformer.training import Callback, Trainer, TrainConfig, TrainingDivergedError, list_checkpoints, read_log


OBJ = ClassificationObjective()


def _config(tmp_path, **kw) -> TrainConfig:
    base = dict(lr=1e-2, batch_size=8, out_dir=str(tmp_path), progress_bar=False, tensorboard=False,
                warmup_steps=2, log_every=1, device="cpu", precision="fp32", seed=3)
    base.update(kw)
    return TrainConfig(**base)


class Kill(Callback):
    """Simulates the process dying right after optimizer step ``at`` (nothing saved past the last checkpoint)."""

    def __init__(self, at: int):
        self.at = at

    def on_step_end(self, trainer, step, metrics):
        if step == self.at:
            raise KeyboardInterrupt


def _model(cls, seed=0, **kw):
    torch.manual_seed(seed)
    return cls(**kw)


def test_resume_after_kill_reproduces_losses_bit_exactly(tmp_path, tiny_data, tiny_classifier, collate):
    # 40 examples / batch 8 = 5 batches per epoch; 12 steps cross two epoch boundaries.
    full = Trainer(_model(tiny_classifier), OBJ, tiny_data, _config(tmp_path / "full", max_steps=12), collate).fit()

    run = _config(tmp_path / "cut", max_steps=12, save_every=3)
    with pytest.raises(KeyboardInterrupt):
        Trainer(_model(tiny_classifier), OBJ, tiny_data, run, collate, callbacks=[Kill(at=7)]).fit()
    assert [p.name for p in list_checkpoints(tmp_path / "cut" / "checkpoints")] == ["step-00000003", "step-00000006"]

    # A differently initialised model: everything must come from the checkpoint.
    resumed_cfg = _config(tmp_path / "cut", max_steps=12, save_every=3, resume=True)
    resumed = Trainer(_model(tiny_classifier, seed=99), OBJ, tiny_data, resumed_cfg, collate).fit()

    assert resumed.final_step == full.final_step == 12
    assert resumed.losses == full.losses  # bit-equal floats, dropout included
    assert len(set(full.losses)) > 6  # the losses really change (dropout + updates)
    # The log reads as one run: steps 1..12 once each, the killed run's step 7 record replaced.
    steps = [r["step"] for r in read_log(tmp_path / "cut") if "loss" in r]
    assert steps == list(range(1, 13))


def test_stop_request_saves_and_resumes_exactly(tmp_path, tiny_data, tiny_classifier, collate):
    cfg_a = _config(tmp_path / "a", max_steps=9, grad_accum=2)
    full = Trainer(_model(tiny_classifier), OBJ, tiny_data, cfg_a, collate).fit()

    class Stop(Callback):
        def on_step_end(self, trainer, step, metrics):
            if step == 4:
                trainer.request_stop()

    cfg = _config(tmp_path / "b", max_steps=9, grad_accum=2)
    first = Trainer(_model(tiny_classifier), OBJ, tiny_data, cfg, collate, callbacks=[Stop()]).fit()
    assert first.stopped_early and first.final_step == 4
    assert first.checkpoint_path is not None and first.checkpoint_path.name == "step-00000004"
    second = Trainer(_model(tiny_classifier, seed=5), OBJ, tiny_data, _config(tmp_path / "b", max_steps=9, grad_accum=2,
                                                                      resume=True), collate).fit()
    assert second.losses == full.losses


def test_nan_loss_stops_with_the_step_named(tmp_path, tiny_data, tiny_classifier, collate):
    class PoisonAt(Callback):
        def on_step_end(self, trainer, step, metrics):
            if step == 4:
                with torch.no_grad():
                    trainer.model.head.weight.fill_(float("nan"))

    model = _model(tiny_classifier)
    trainer = Trainer(model, OBJ, tiny_data, _config(tmp_path, max_steps=10), collate, callbacks=[PoisonAt()])
    with pytest.raises(TrainingDivergedError, match=r"loss is nan at step 5 \(micro-batch 1 of 1\)"):
        trainer.fit()
    assert trainer.step == 4


def test_gradient_accumulation_matches_the_large_batch(tmp_path, tiny_data, tiny_classifier, collate):
    """accum 2 x batch 4 == batch 8: same loss and same weights (no dropout, equal micro-batch sizes)."""
    from hybridformer.data import ShuffledBatchSampler

    results = {}
    for name, bs, accum in (("big", 8, 1), ("accum", 4, 2)):
        model = _model(tiny_classifier, dropout=0.0).double()
        # Same example order: batch 8 = two consecutive batches of 4 from the same permutation.
        sampler = ShuffledBatchSampler(len(tiny_data), bs, seed=1)
        cfg = _config(tmp_path / name, max_steps=4, batch_size=bs, grad_accum=accum)
        res = Trainer(model, OBJ, tiny_data, cfg, collate, batch_sampler=sampler).fit()
        results[name] = (res.losses, [p.detach().clone() for p in model.parameters()])
    big_losses, big_params = results["big"]
    acc_losses, acc_params = results["accum"]
    assert acc_losses == pytest.approx(big_losses, rel=1e-12, abs=1e-12)
    for a, b in zip(acc_params, big_params):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_set_step_is_called_before_each_step(tmp_path, tiny_data, tiny_classifier, collate):
    class Annealed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.seen = []

        def set_step(self, step):
            self.seen.append(step)

    model = _model(tiny_classifier)
    model.annealed = Annealed()
    Trainer(model, OBJ, tiny_data, _config(tmp_path, max_steps=5), collate).fit()
    assert model.annealed.seen == [0, 1, 2, 3, 4]


def test_result_logs_and_eval(tmp_path, tiny_data, tiny_classifier, collate):
    calls = []

    def eval_fn(model):
        assert not model.training
        calls.append(1)
        return {"accuracy": 0.5}

    cfg = _config(tmp_path, epochs=2, eval_every=4, log_every=2, tensorboard=True)
    result = Trainer(_model(tiny_classifier), OBJ, tiny_data, cfg, collate, eval_fn=eval_fn).fit()
    assert result.final_step == 10  # 2 epochs x 5 batches
    assert len(result.losses) == 10
    assert result.tokens_per_s > 0 and result.examples_per_s > 0 and result.peak_memory_mb > 0
    assert result.checkpoint_path.name == "step-00000010"
    assert result.eval_metrics == {"accuracy": 0.5} and len(calls) == 3  # steps 4, 8 and the end
    records = read_log(tmp_path)
    assert [r["step"] for r in records if "loss" in r] == [2, 4, 6, 8, 10]
    assert [r["step"] for r in records if "eval/accuracy" in r] == [4, 8, 10]
    assert all(r["tokens_per_s"] > 0 and 0 < r["lr"] <= 1e-2 for r in records if "loss" in r)
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    json.loads((tmp_path / "log.jsonl").read_text().splitlines()[0])
    assert (tmp_path / "train_config.yaml").is_file()


def test_training_reduces_the_loss(tmp_path, tiny_data, tiny_classifier, collate):
    cfg = _config(tmp_path, epochs=10, lr=3e-2, warmup_steps=0, warmup_ratio=0.1)
    losses = Trainer(_model(tiny_classifier, dropout=0.0), OBJ, tiny_data, cfg, collate).fit().losses
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5


def test_checkpoint_loads_weights_only(tmp_path, tiny_data, tiny_classifier, collate):
    result = Trainer(_model(tiny_classifier), OBJ, tiny_data, _config(tmp_path, max_steps=2), collate).fit()
    state = torch.load(result.checkpoint_path / "training_state.pt", weights_only=True)
    assert state["step"] == 2 and state["data"]["batch_index"] == 2
    from safetensors.torch import load_file

    weights = load_file(result.checkpoint_path / "model.safetensors")
    assert set(weights) == {"embed.weight", "norm.weight", "norm.bias", "head.weight", "head.bias"}


def test_bad_inputs_raise_clear_errors(tmp_path, tiny_data, tiny_classifier, collate):
    with pytest.raises(ConfigError, match="grad_accum"):
        TrainConfig(grad_accum=0)
    with pytest.raises(ConfigError, match="precision"):
        from hybridformer.config import from_dict

        from_dict(TrainConfig, {"precision": "fp8"})
    Trainer(_model(tiny_classifier), OBJ, tiny_data, _config(tmp_path / "used", max_steps=1), collate).fit()
    with pytest.raises(ValueError, match="already holds checkpoints of another run"):
        Trainer(_model(tiny_classifier), OBJ, tiny_data, _config(tmp_path / "used", max_steps=1), collate).fit()
    with pytest.raises(ValueError, match="no optimizer step"):
        Trainer(_model(tiny_classifier), OBJ, tiny_data, _config(tmp_path, epochs=0.1, grad_accum=4), collate)

    def not_a_loss(model, batch):
        return {"loss": model(batch["input_ids"], batch["attention_mask"]).logits}

    def vector_loss(model, batch):
        return LossOutput(loss=model(batch["input_ids"], batch["attention_mask"]).logits.sum(-1))

    for bad, seen in ((not_a_loss, "dict"), (vector_loss, r"\(8,\)")):
        with pytest.raises(ValueError, match=f"objective: must return a LossOutput with a scalar `loss` tensor, got {seen}"):
            Trainer(_model(tiny_classifier), bad, tiny_data, _config(tmp_path / seen[:4], max_steps=1), collate).fit()
    with pytest.raises(ValueError, match=r"objective: expected objective\(model, batch\) -> LossOutput"):
        Trainer(_model(tiny_classifier), tiny_data, tiny_data, _config(tmp_path, max_steps=1), collate)


class TinyMLM(torch.nn.Module):
    """Embedding -> dropout -> tied decoder scoring the selected positions; trained with MLMObjective."""

    def __init__(self, vocab: int, dim: int = 8):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, dim)
        self.drop = torch.nn.Dropout(0.1)

    def forward(self, input_ids, attention_mask, token_type_ids=None, positions=None):
        from hybridformer.models import MaskedLMOutput

        logits = self.drop(self.embed(input_ids))[positions] @ self.embed.weight.T  # (M, V)
        return MaskedLMOutput(logits=logits, aux_loss=logits.new_zeros(()), gate_stats=[])


def test_mlm_pretraining_resume_is_exact_with_masking_and_length_buckets(tmp_path):
    """Collate-time masking draws from the global RNG: the checkpoint must carry it."""
    from hybridformer.data import LengthBucketBatchSampler, MLMCollator, load_sentiment, minilm_tokenizer, token_lengths

    tok = minilm_tokenizer()
    texts = load_sentiment().texts[:48]
    collate = MLMCollator(tok, max_length=32)
    lengths = token_lengths(texts, tok, 32)

    def run(out, seed, **kw):
        torch.manual_seed(seed)
        sampler = LengthBucketBatchSampler(lengths, 8, bucket_size=24, seed=0)
        cfg = _config(tmp_path / out, max_steps=8, **kw)
        return Trainer(TinyMLM(len(tok)), MLMObjective(), texts, cfg, collate, batch_sampler=sampler)

    full = run("full", 0).fit()
    with pytest.raises(KeyboardInterrupt):
        trainer = run("cut", 0, save_every=4)
        trainer.callbacks.append(Kill(at=6))
        trainer.fit()
    resumed = run("cut", 1, save_every=4, resume=True).fit()
    assert resumed.losses == full.losses and resumed.final_step == 8


def test_precision_choice_and_bf16_autocast_on_cpu(tmp_path, tiny_data, tiny_classifier, collate):
    from hybridformer.training import autocast_dtype

    cpu = torch.device("cpu")
    assert autocast_dtype("auto", cpu) is None and autocast_dtype("fp32", cpu) is None
    assert autocast_dtype("bf16", cpu) is torch.bfloat16
    seen = []
    losses = {}
    for precision in ("fp32", "bf16"):
        model = _model(tiny_classifier, dropout=0.0)
        model.head.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
        cfg = _config(tmp_path / precision, max_steps=3, precision=precision)
        losses[precision] = Trainer(model, OBJ, tiny_data, cfg, collate).fit().losses
    assert seen == [torch.float32] * 3 + [torch.bfloat16] * 3  # autocast runs the Linear in bf16
    assert losses["bf16"] != losses["fp32"]
    assert losses["bf16"] == pytest.approx(losses["fp32"], abs=0.05)
