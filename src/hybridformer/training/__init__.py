"""Training: config, AdamW + warmup/cosine, crash-safe checkpoints, logging and the Trainer.

Typical use::

    from hybridformer.training import Trainer, TrainConfig
    config = TrainConfig(lr=5e-5, epochs=1, batch_size=16, out_dir="runs/sentiment")
    result = Trainer(model, ClassificationObjective(), splits.train, config, TextCollator(tokenizer)).fit()
    print(result.final_step, result.losses[-1], result.tokens_per_s, result.checkpoint_path)
"""

from .checkpoint import (
    latest_checkpoint,
    list_checkpoints,
    load_model_weights,
    load_training_state,
    save_checkpoint,
    save_model_weights,
)
from .config import TrainConfig
from .logging import RunLogger, read_log
from .optim import WarmupCosine, build_optimizer, build_scheduler, param_groups
from .device import autocast_dtype, peak_memory_mb, resolve_device
from .results import Callback, StepOutput, TrainingDivergedError, TrainResult
from .seeding import seed_everything, use_deterministic
from .trainer import Trainer

__all__ = [
    "Callback",
    "RunLogger",
    "StepOutput",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingDivergedError",
    "WarmupCosine",
    "autocast_dtype",
    "build_optimizer",
    "build_scheduler",
    "latest_checkpoint",
    "list_checkpoints",
    "load_model_weights",
    "load_training_state",
    "param_groups",
    "peak_memory_mb",
    "read_log",
    "resolve_device",
    "save_checkpoint",
    "save_model_weights",
    "seed_everything",
    "use_deterministic",
]
