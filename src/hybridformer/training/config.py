"""The ``train`` config section: optimisation, schedule, precision, logging and checkpointing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..config import check

__all__ = ["TrainConfig"]


@dataclass
class TrainConfig:
    """How to train. Model-agnostic: the model and data are given to the Trainer separately."""

    lr: float = 5e-5
    """Peak learning rate of AdamW (reached after warmup)."""
    weight_decay: float = 0.01
    """Decoupled weight decay; never applied to biases, norm weights or other 1-D parameters."""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW moment decay rates."""
    eps: float = 1e-8
    """AdamW denominator epsilon."""
    warmup_steps: int = 0
    """Linear warmup length in optimizer steps; when 0, ``warmup_ratio`` decides."""
    warmup_ratio: float = 0.06
    """Warmup as a fraction of the total steps, used when ``warmup_steps`` is 0."""
    lr_multipliers: dict[str, float] = field(default_factory=dict)
    """Learning-rate factors by parameter name: a parameter whose dotted name contains a key (e.g.
    ``scorer``, ``gate.``) trains at ``lr * factor`` (the longest matching key wins). Modules added
    to a pretrained checkpoint (the attention scorer, FFN gates) start from scratch, and at a
    fine-tuning lr they barely move in a few hundred steps; L0/CoFi-style pruning trains its masks
    at a larger lr for the same reason. Every key must match some parameter."""
    min_lr_ratio: float = 0.0
    """Cosine decay floor as a fraction of ``lr`` (0: decay to zero at the last step)."""
    max_steps: int | None = None
    """Total optimizer steps; None: derived from ``epochs``. When set it wins over ``epochs``."""
    epochs: float = 1.0
    """Passes over the training data (fractions allowed) when ``max_steps`` is None."""
    batch_size: int = 16
    """Examples per micro-batch (one forward/backward)."""
    grad_accum: int = 1
    """Micro-batches per optimizer step; the effective batch is ``batch_size * grad_accum``."""
    clip_norm: float | None = 1.0
    """Clip the global gradient L2 norm to this; None disables clipping."""
    precision: Literal["fp32", "bf16", "auto"] = "auto"
    """``bf16``: autocast matmuls to bfloat16 (weights and optimizer stay fp32). ``auto``: bf16 on CUDA
    devices that support it, fp32 on CPU, where bf16 autocast measured 1.38x faster for a MiniLM
    step at 64 tokens but 0.83x (slower) at 512 tokens, so it does not reliably help."""
    device: str = "auto"
    """``auto`` (CUDA if available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    num_workers: int = 0
    """DataLoader worker processes; 0 collates in the main process, which keeps collate-time
    randomness (MLM masking) on the RNG that checkpoints save, so resume stays exact."""
    log_every: int = 10
    """Write a log record (JSON line, TensorBoard, progress bar) every this many steps."""
    eval_every: int | None = None
    """Call ``eval_fn`` every this many steps (and at the end); None: only at the end."""
    save_every: int | None = None
    """Checkpoint every this many steps (and at the end); None: only at the end."""
    keep_last: int = 2
    """Checkpoints kept in ``out_dir/checkpoints`` (older ones are deleted after a new one is safe)."""
    keep_checkpoints: bool = True
    """After a successful finish, keep ``out_dir/checkpoints``. Recipes that save a final model
    (finetune, pretrain) default it to false and delete them once the model is saved: they only
    serve to resume an interrupted run."""
    out_dir: str = "runs/train"
    """Where logs (``log.jsonl``, ``tensorboard/``) and checkpoints go."""
    seed: int = 0
    """The run's one seed: torch, Python and NumPy RNGs (before the recipes build the model, so new
    heads, scorers and gates), the batch order, dropout, Gumbel and selection noise, MLM masking."""
    deterministic: bool = False
    """Use only deterministic kernels (``torch.use_deterministic_algorithms``, and
    ``CUBLAS_WORKSPACE_CONFIG`` on CUDA), so CUDA runs of one seed repeat exactly; an op without a
    deterministic CUDA kernel then stops with an error. CPU runs repeat without it."""
    resume: bool = False
    """Continue from the latest checkpoint in ``out_dir/checkpoints`` if one exists."""
    resume_from: str | None = None
    """Continue from this checkpoint folder (implies resume)."""
    progress_bar: bool = True
    """Show a tqdm bar (loss, tokens/s, ETA) on a terminal; when stderr is not a terminal (a log
    file, CI, nohup) plain progress lines are printed every ``progress_every`` seconds instead."""
    progress_every: float = 15.0
    """Without a terminal: seconds between plain progress lines (step, loss, tokens/s, ETA); 0: every step."""
    tensorboard: bool = True
    """Write TensorBoard event files under ``out_dir/tensorboard``."""
    drop_last: bool = False
    """Default sampler only: drop each epoch's final short batch."""

    def __post_init__(self) -> None:
        check(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        check(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        check(all(0 <= b < 1 for b in self.betas), "betas", f"each must be in [0, 1), got {self.betas}")
        check(self.eps > 0, "eps", f"must be > 0, got {self.eps}")
        check(self.warmup_steps >= 0, "warmup_steps", f"must be >= 0, got {self.warmup_steps}")
        check(0 <= self.warmup_ratio < 1, "warmup_ratio", f"must be in [0, 1), got {self.warmup_ratio}")
        for key, factor in self.lr_multipliers.items():
            check(bool(key), "lr_multipliers", "keys must be non-empty parameter-name patterns")
            check(factor > 0, f"lr_multipliers.{key}", f"must be > 0, got {factor}")
        check(0 <= self.min_lr_ratio <= 1, "min_lr_ratio", f"must be in [0, 1], got {self.min_lr_ratio}")
        check(self.max_steps is None or self.max_steps >= 1, "max_steps", f"must be >= 1 or None, got {self.max_steps}")
        check(self.epochs > 0, "epochs", f"must be > 0, got {self.epochs}")
        check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        check(self.grad_accum >= 1, "grad_accum", f"must be >= 1, got {self.grad_accum}")
        check(self.clip_norm is None or self.clip_norm > 0, "clip_norm", f"must be > 0 or None, got {self.clip_norm}")
        check(self.num_workers >= 0, "num_workers", f"must be >= 0, got {self.num_workers}")
        check(self.progress_every >= 0, "progress_every", f"must be >= 0, got {self.progress_every}")
        check(self.log_every >= 1, "log_every", f"must be >= 1, got {self.log_every}")
        for name in ("eval_every", "save_every"):
            value = getattr(self, name)
            check(value is None or value >= 1, name, f"must be >= 1 or None, got {value}")
        check(self.keep_last >= 1, "keep_last", f"must be >= 1, got {self.keep_last}")
        check(
            self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
            "device",
            f"must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}",
        )
