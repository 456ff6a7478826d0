"""A model-agnostic training loop with exact resume: ``Trainer(model, objective, data, config, collate)``.

Contract: ``objective(model, batch) -> LossOutput`` (:mod:`hybridformer.losses`), where ``batch`` is
the dict the collate function returns; ``LossOutput.loss`` is the scalar to minimise and its
``metrics`` are logged. The model itself never computes a loss and is never wrapped, so its module
paths and state-dict keys do not depend on the objective. Parameters of the objective (e.g. a
learnable temperature) are optimised and checkpointed with the model's. Any module of the model
with a ``set_step(step)`` method is told the current optimizer step before each step.

:meth:`Trainer.train_step` is the seam: the forward and backward passes of one optimizer step over
its micro-batches. A pipeline-parallel schedule replaces it by subclassing; ``fit`` keeps the loop,
clipping, the optimizer, evaluation, logging and checkpoints.

Exact resume: a checkpoint holds the weights, optimizer, scheduler, the torch/Python/NumPy RNG states,
the epoch, the position inside it and the epoch's batch order itself. A run killed after checkpoint
``k`` and resumed reproduces the uninterrupted run's losses bit for bit (with ``num_workers=0``,
same device and library versions), dropout and MLM masking included.
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..config import save_config
from ..data.batches import count_batch, iterate_batches
from ..data.samplers import ShuffledBatchSampler
from ..losses.output import LossOutput, Objective
from ..data.splits import stable_hash
from .checkpoint import latest_checkpoint, load_training_state, rng_state, save_checkpoint, set_rng_state
from .config import TrainConfig
from .device import autocast_dtype, peak_memory_mb, resolve_device
from .logging import RunLogger
from .optim import build_optimizer, build_scheduler
from .results import Callback, StepOutput, TrainingDivergedError, TrainResult, check_finite
from .seeding import seed_everything, use_deterministic

__all__ = ["TrainingDivergedError", "TrainResult", "StepOutput", "Callback", "Trainer"]

CHECKPOINT_DIR = "checkpoints"


class Trainer:
    """Trains ``model`` under ``objective`` on ``train_data`` as ``config`` says (see the module docstring).

    Args:
        model: the model to train; ``objective`` runs it.
        objective: ``objective(model, batch) -> LossOutput`` (e.g. :class:`~hybridformer.losses.ClassificationObjective`).
        train_data: any map-style dataset; ``train_data[i]`` goes to ``collate_fn``.
        config: :class:`TrainConfig`.
        collate_fn: list of examples -> dict of tensors (e.g. :class:`hybridformer.data.TextCollator`).
        eval_fn: ``eval_fn(model) -> {"accuracy": ...}`` run every ``config.eval_every`` steps and
            at the end, in eval mode; its randomness never disturbs the training RNG.
        batch_sampler: yields lists of indices (e.g. :class:`hybridformer.data.LengthBucketBatchSampler`);
            must define ``__len__`` and, for exact resume, ``set_epoch(epoch)`` with an order that
            depends only on the epoch. Default: :class:`hybridformer.data.ShuffledBatchSampler`
            with ``config.batch_size`` and ``config.seed``.
        callbacks: :class:`Callback` objects.
    """

    def __init__(
        self,
        model: nn.Module,
        objective: Objective,
        train_data: Dataset | Sequence[Any],
        config: TrainConfig,
        collate_fn: Callable[[list[Any]], Mapping[str, Any]],
        *,
        eval_fn: Callable[[nn.Module], Mapping[str, float]] | None = None,
        batch_sampler: Any | None = None,
        callbacks: Sequence[Callback] = (),
    ):
        if not callable(objective):
            raise ValueError(
                f"objective: expected objective(model, batch) -> LossOutput (e.g. ClassificationObjective()), "
                f"got {type(objective).__name__}; the Trainer is Trainer(model, objective, train_data, config, collate_fn)"
            )
        self.model, self.objective, self.train_data = model, objective, train_data
        self.config, self.collate_fn, self.eval_fn = config, collate_fn, eval_fn
        self.callbacks = list(callbacks)
        n = len(train_data)  # type: ignore[arg-type]
        self.batch_sampler = batch_sampler or ShuffledBatchSampler(
            n, config.batch_size, shuffle=True, drop_last=config.drop_last, seed=config.seed
        )
        self.batches_per_epoch = len(self.batch_sampler)
        if self.batches_per_epoch < 1:
            raise ValueError(f"train_data: {n} examples make no batch of batch_size={config.batch_size}")
        self.total_steps = config.max_steps or math.floor(config.epochs * self.batches_per_epoch / config.grad_accum)
        if self.total_steps < 1:
            raise ValueError(
                f"epochs: {config.epochs} epoch(s) of {self.batches_per_epoch} batches give no optimizer step "
                f"with grad_accum={config.grad_accum}; raise epochs or set max_steps"
            )
        self.device = resolve_device(config.device)
        self.amp_dtype = autocast_dtype(config.precision, self.device)
        self.out_dir = Path(config.out_dir)
        self.checkpoint_dir = self.out_dir / CHECKPOINT_DIR
        self.step, self._stop = 0, False
        # Data position: the epoch, its batch list (fixed when the epoch starts) and batches consumed.
        self._epoch = 0
        self._epoch_batches: list[list[int]] | None = None
        self._batch_index = 0

    def request_stop(self) -> None:
        """Finish the current step, save a checkpoint and return (e.g. early stopping from a callback)."""
        self._stop = True

    def discard_checkpoints(self) -> str:
        """After a successful run: delete ``checkpoints/`` unless ``config.keep_checkpoints``; say what was kept."""
        kept = self.latest_checkpoint()
        if kept is None:
            return "no checkpoint was written"
        if self.config.keep_checkpoints:
            return f"kept the checkpoints in {self.checkpoint_dir} (latest {kept.name}, for resuming)"
        shutil.rmtree(self.checkpoint_dir, ignore_errors=True)
        return f"deleted the checkpoints in {self.checkpoint_dir} (set train.keep_checkpoints=true to keep them)"

    def _state(self, optimizer: torch.optim.Optimizer, scheduler: Any, losses: list[float]) -> dict[str, Any]:
        batches = self._epoch_batches or []
        return {
            "step": self.step,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": rng_state(),
            "data": {
                "epoch": self._epoch,
                "batch_index": self._batch_index,
                "batches": torch.tensor([i for b in batches for i in b], dtype=torch.int64),
                "batch_sizes": torch.tensor([len(b) for b in batches], dtype=torch.int64),
                "num_examples": len(self.train_data),  # type: ignore[arg-type]
            },
            "losses": torch.tensor(losses, dtype=torch.float64),
            "objective": self._objective_module().state_dict() if self._objective_module() else {},
        }

    def _objective_module(self) -> nn.Module | None:
        """The objective when it is a Module (its parameters and buffers train and checkpoint too)."""
        return self.objective if isinstance(self.objective, nn.Module) else None

    def clip_gradients(self, params: Sequence[Tensor]) -> Tensor:
        """Scale the gradients so their total 2-norm is at most ``config.clip_norm``; return the norm
        before clipping (a subclass whose gradients span several processes overrides this)."""
        return torch.nn.utils.clip_grad_norm_(params, self.config.clip_norm)

    # -- the checkpoint seam: a subclass that stores checkpoints its own way (ParallelTrainer's DCP
    # shards) overrides these three; ``fit`` only calls them.

    def latest_checkpoint(self) -> Path | None:
        """The newest complete checkpoint of this run under ``checkpoint_dir``, or None."""
        return latest_checkpoint(self.checkpoint_dir)

    def save_checkpoint(self, optimizer: torch.optim.Optimizer, scheduler: Any, losses: list[float]) -> Path:
        """Write a checkpoint of the current step (weights, optimizer, scheduler, RNG, data position,
        losses, the objective's state) and return its folder."""
        return save_checkpoint(
            self.checkpoint_dir, self.step, self.model, self._state(optimizer, scheduler, losses), self.config.keep_last
        )

    def restore_checkpoint(self, path: Path, optimizer: torch.optim.Optimizer, scheduler: Any) -> list[float]:
        """Load the checkpoint ``path`` into the model and optimizer, restore the rest of the state
        (:meth:`restore_state`) and return the losses logged so far."""
        state = load_training_state(path, self.model)
        optimizer.load_state_dict(state["optimizer"])
        return self.restore_state(path, state, scheduler)

    def restore_state(self, path: Path, state: Mapping[str, Any], scheduler: Any) -> list[float]:
        """Restore what :meth:`_state` saved besides the weights and the optimizer: the objective,
        scheduler, RNG states, step and data position; return the losses logged so far."""
        data = state["data"]
        n = len(self.train_data)  # type: ignore[arg-type]
        if data["num_examples"] != n:
            raise ValueError(
                f"resume: checkpoint {path} was trained on {data['num_examples']} examples, this data has {n}"
            )
        objective = self._objective_module()
        if objective is not None and state.get("objective"):
            objective.load_state_dict(state["objective"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        self.step = int(state["step"])
        self._epoch = int(data["epoch"])
        self._batch_index = int(data["batch_index"])
        flat = data["batches"].tolist()
        sizes = data["batch_sizes"].tolist()
        offsets = np.cumsum([0] + sizes)
        self._epoch_batches = [flat[offsets[i] : offsets[i + 1]] for i in range(len(sizes))] or None
        return [float(x) for x in state["losses"].tolist()]

    def _micro_batches(self) -> Iterator[Mapping[str, Any]]:
        """Endless stream of collated batches, advancing the saved data position as they are consumed."""
        cfg = self.config
        while True:
            if self._epoch_batches is None:
                if hasattr(self.batch_sampler, "set_epoch"):
                    self.batch_sampler.set_epoch(self._epoch)
                self._epoch_batches = [list(b) for b in self.batch_sampler]
                self._batch_index = 0
            remaining = self._epoch_batches[self._batch_index :]
            loader = iterate_batches(
                self.train_data,
                self.collate_fn,
                remaining,
                num_workers=cfg.num_workers,
                pin_memory=self.device.type == "cuda",
                # Worker seeds come from this generator, not the global RNG the checkpoint restores.
                generator=torch.Generator().manual_seed(stable_hash("loader", cfg.seed, self._epoch) & (2**63 - 1)),
            )
            for batch in loader:
                self._batch_index += 1
                yield batch
            self._epoch += 1
            self._epoch_batches = None

    def _to_device(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v.to(self.device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in batch.items()}

    def _evaluate(self, logger: RunLogger) -> dict[str, float]:
        if self.eval_fn is None:
            return {}
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        self.model.eval()
        try:
            with torch.random.fork_rng(devices=devices):
                metrics = {k: float(v) for k, v in self.eval_fn(self.model).items()}
        finally:
            self.model.train()
        logger.log(self.step, {f"eval/{k}": v for k, v in metrics.items()})
        for cb in self.callbacks:
            cb.on_evaluate(self, self.step, metrics)
        return metrics

    def train_step(self, micro_batches: Sequence[Mapping[str, Any]]) -> StepOutput:
        """Forward and backward passes of one optimizer step: gradients accumulate over the micro-batches.

        The seam a pipeline-parallel schedule replaces (subclass and override). It neither zeroes
        the gradients nor steps the optimizer; ``fit`` does both around it. Each micro-batch's loss
        is divided by their number, so the gradient is that of the mean loss.

        Args:
            micro_batches: collated batches (on the CPU; moved to the device here).

        Returns:
            :class:`StepOutput` with each micro-batch's loss and the mean of the objective's metrics.
        """
        n = len(micro_batches)
        losses: list[Tensor] = []
        totals: dict[str, Tensor] = {}
        for batch in micro_batches:
            with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                enabled=self.amp_dtype is not None):
                out = self.objective(self.model, self._to_device(batch))
            if not isinstance(out, LossOutput) or not isinstance(out.loss, Tensor) or out.loss.dim() != 0:
                seen = tuple(out.loss.shape) if isinstance(getattr(out, "loss", None), Tensor) else type(out).__name__
                raise ValueError(
                    f"objective: must return a LossOutput with a scalar `loss` tensor, got {seen}"
                )
            (out.loss / n).backward()
            losses.append(out.loss.detach().to(torch.float64))
            for name, value in out.metrics.items():
                value = value.detach().to(torch.float64)
                totals[name] = totals[name] + value if name in totals else value
        return StepOutput(micro_losses=torch.stack(losses), metrics={k: v / n for k, v in totals.items()})

    def fit(self) -> TrainResult:
        """Train to ``total_steps`` (or until a callback stops it) and return a :class:`TrainResult`.

        Seeds the global torch/Python/NumPy RNGs with ``config.seed`` (or restores them from the
        checkpoint when resuming), so build the model *before* calling ``fit`` under your own seed.
        Writes ``train_config.yaml``, ``log.jsonl``, ``tensorboard/`` and ``checkpoints/step-*`` under
        ``config.out_dir``. Call it once per Trainer.

        Raises:
            TrainingDivergedError: the loss or gradient norm became NaN/inf (the message names the
                step; the weights of the last good step are in the last checkpoint).
        """
        cfg = self.config
        self.model.to(self.device)
        if cfg.deterministic:
            use_deterministic(True)
        seed_everything(cfg.seed)
        objective = self._objective_module()
        if objective is not None:
            objective.to(self.device)
        optimizer = build_optimizer(self.model, cfg, objective)
        scheduler = build_scheduler(optimizer, cfg, self.total_steps)
        losses: list[float] = []
        resume_path = Path(cfg.resume_from) if cfg.resume_from else None
        if resume_path is None and cfg.resume:
            resume_path = self.latest_checkpoint()
        elif resume_path is None and (existing := self.latest_checkpoint()) is not None:
            # A fresh run would interleave its checkpoints with the old run's and resume could pick either.
            raise ValueError(
                f"out_dir: {self.out_dir} already holds checkpoints of another run (latest: {existing.name}); "
                "set resume=true to continue it or choose another out_dir"
            )
        if resume_path is not None:
            losses = self.restore_checkpoint(resume_path, optimizer, scheduler)
        save_config(cfg, self.out_dir / "train_config.yaml")
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        steppers = [m for m in self.model.modules() if callable(getattr(m, "set_step", None))]
        params = [p for group in optimizer.param_groups for p in group["params"]]

        logger = RunLogger(
            self.out_dir, total_steps=self.total_steps, start_step=self.step,
            progress_bar=cfg.progress_bar, tensorboard=cfg.tensorboard, progress_every=cfg.progress_every,
        )
        if resume_path is not None:
            logger.note(f"resumed from step {self.step} ({resume_path})")
        checkpoint: Path | None = resume_path
        eval_metrics: dict[str, float] = {}
        tokens = examples = window_tokens = 0
        window_seconds = train_seconds = 0.0  # window: throughput since the last log record, training time only
        saved_at = self.step if resume_path is not None else -1
        evaluated_at = -1
        stream = self._micro_batches()
        self.model.train()
        try:
            for cb in self.callbacks:
                cb.on_train_start(self)
            while self.step < self.total_steps and not self._stop:
                t0 = time.perf_counter()
                for module in steppers:
                    module.set_step(self.step)
                optimizer.zero_grad(set_to_none=True)
                batches = [next(stream) for _ in range(cfg.grad_accum)]
                counts = [count_batch(batch) for batch in batches]
                step_tokens = sum(c[0] for c in counts)
                tokens, examples = tokens + step_tokens, examples + sum(c[1] for c in counts)
                window_tokens += step_tokens
                step_out = self.train_step(batches)
                grad_norm = self.clip_gradients(params) if cfg.clip_norm else None
                loss_value = step_out.loss.item()
                check_finite(self.step + 1, step_out.micro_losses, grad_norm, losses)
                lr = scheduler.get_last_lr()[0]
                optimizer.step()
                scheduler.step()
                self.step += 1
                losses.append(loss_value)
                step_seconds = time.perf_counter() - t0
                train_seconds += step_seconds
                window_seconds += step_seconds
                logger.advance(loss=loss_value, tokens=step_tokens, seconds=step_seconds)

                metrics = {"loss": loss_value, "lr": lr}
                metrics.update({f"train/{k}": float(v) for k, v in step_out.metrics.items()})
                if grad_norm is not None:
                    metrics["grad_norm"] = float(grad_norm)
                if self.step % cfg.log_every == 0 or self.step == self.total_steps:
                    metrics["tokens_per_s"] = window_tokens / max(window_seconds, 1e-9)
                    metrics["epoch"] = self._epoch + self._batch_index / self.batches_per_epoch
                    logger.log(self.step, metrics)
                    window_tokens, window_seconds = 0, 0.0
                for cb in self.callbacks:
                    cb.on_step_end(self, self.step, metrics)
                if cfg.eval_every and self.step % cfg.eval_every == 0:
                    eval_metrics, evaluated_at = self._evaluate(logger), self.step
                if cfg.save_every and self.step % cfg.save_every == 0:
                    checkpoint = self.save_checkpoint(optimizer, scheduler, losses)
                    saved_at = self.step
            if evaluated_at != self.step:
                eval_metrics = self._evaluate(logger) or eval_metrics
            if saved_at != self.step and self.step > 0:
                checkpoint = self.save_checkpoint(optimizer, scheduler, losses)
            if losses:
                logger.note(f"trained to step {self.step} in {train_seconds:.1f} s of training: loss "
                            f"{losses[0]:.4f} (step 1) -> {losses[-1]:.4f}, {tokens / max(train_seconds, 1e-9):,.0f} tok/s")
        finally:
            logger.close()
        result = TrainResult(
            final_step=self.step,
            losses=losses,
            tokens_per_s=(tokens or examples) / max(train_seconds, 1e-9),
            examples_per_s=examples / max(train_seconds, 1e-9),
            peak_memory_mb=peak_memory_mb(self.device),
            checkpoint_path=checkpoint,
            eval_metrics=eval_metrics,
            train_seconds=train_seconds,
            stopped_early=self._stop and self.step < self.total_steps,
        )
        for cb in self.callbacks:
            cb.on_train_end(self, result)
        return result
