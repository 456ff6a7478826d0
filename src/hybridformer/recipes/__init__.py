"""Recipes: the end-to-end text jobs behind the CLI (fine-tune, evaluate, pretrain, train a tokenizer).

Each recipe is a typed config (dataclass sections, loadable from YAML/TOML with ``--section.field``
overrides) and one function that runs it and returns a typed result. The ``hybridformer`` commands
are thin wrappers around them, and scripts (``benchmarks/text_experiment.py``) call them directly::

    from hybridformer.recipes import FinetuneConfig, finetune
    result = finetune(FinetuneConfig())          # MiniLM fine-tuned on the movie-review sentiment set
    print(result.metrics["test"].accuracy, result.model_dir)
"""

from hybridformer.recipes.corpus import CorpusConfig, load_corpus
from hybridformer.recipes.evaluate import EvaluateConfig, EvaluateResult, TaskDataChanges, evaluate
from hybridformer.recipes.finetune import FinetuneConfig, FinetuneResult, finetune
from hybridformer.recipes.metrics import (
    ClassificationMetrics, Predictions, evaluate_classifier, predict_classifier, score_predictions,
)
from hybridformer.recipes.model import ModelConfig, build_classifier
from hybridformer.recipes.pretrain import PretrainConfig, PretrainModelConfig, PretrainResult, pretrain
from hybridformer.recipes.pruning import PruneConfig, calibration_batches, prune_classifier
from hybridformer.recipes.task_data import TaskDataConfig, load_task_data, read_data_record
from hybridformer.recipes.tokenizer import TokenizerConfig, TokenizerResult, train_tokenizer

__all__ = [
    "ClassificationMetrics",
    "CorpusConfig",
    "EvaluateConfig",
    "EvaluateResult",
    "FinetuneConfig",
    "FinetuneResult",
    "ModelConfig",
    "PretrainConfig",
    "PretrainModelConfig",
    "PretrainResult",
    "Predictions",
    "PruneConfig",
    "TaskDataChanges",
    "TaskDataConfig",
    "TokenizerConfig",
    "TokenizerResult",
    "build_classifier",
    "calibration_batches",
    "evaluate",
    "evaluate_classifier",
    "finetune",
    "load_corpus",
    "load_task_data",
    "predict_classifier",
    "pretrain",
    "prune_classifier",
    "read_data_record",
    "score_predictions",
    "train_tokenizer",
]
