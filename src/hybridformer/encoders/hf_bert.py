"""Converter from Hugging Face BERT/RoBERTa checkpoints (config and weight names) to ours."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from hybridformer.attention import AttentionConfig
from hybridformer.encoders.text_config import TextEncoderConfig
from hybridformer.sparsity import SparsityConfig

__all__ = [
    "SUPPORTED_MODEL_TYPES",
    "ConvertedState",
    "config_from_hf",
    "convert_hf_mlm_head",
    "convert_hf_state_dict",
    "hf_encoder_keys",
]

# model_type in config.json -> the family whose layout (names, position numbering) it shares.
SUPPORTED_MODEL_TYPES = {"bert": "bert", "roberta": "roberta", "xlm-roberta": "roberta", "camembert": "roberta"}
# hidden_act in config.json -> our activation name.
_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}
# Sub-module names inside one HF layer -> ours inside one TransformerBlock.
_LAYER_NAMES = {
    "attention.self.query": "attention.q_proj",
    "attention.self.key": "attention.k_proj",
    "attention.self.value": "attention.v_proj",
    "attention.output.dense": "attention.o_proj",
    "attention.output.LayerNorm": "attention_norm",
    "intermediate.dense": "ffn.fc_in",
    "output.dense": "ffn.fc_out",
    "output.LayerNorm": "ffn_norm",
}
_TOP_NAMES = {
    "embeddings.word_embeddings": "embeddings.word_embeddings",
    "embeddings.position_embeddings": "embeddings.position_embeddings",
    "embeddings.token_type_embeddings": "embeddings.token_type_embeddings",
    "embeddings.LayerNorm": "embeddings.norm",
}
_POOLER_NAMES = {"pooler.dense": "pooler.dense"}
# Buffers some HF versions save; they hold nothing trained.
_IGNORED = {"embeddings.position_ids", "embeddings.token_type_ids"}
_ENCODER_ROOTS = ("embeddings.", "encoder.", "pooler.")


def config_from_hf(hf: dict[str, Any], source: str) -> TextEncoderConfig:
    """Our encoder config for an HF ``config.json``: full attention, gates off, so outputs match.

    Args:
        hf: the parsed config.json.
        source: where it came from, for error messages.

    Raises:
        ValueError: the model type, position embedding type or activation is not supported.
    """
    model_type = hf.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"{source}: model_type {model_type!r} is not supported; supported: {sorted(SUPPORTED_MODEL_TYPES)}"
        )
    position_type = hf.get("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise ValueError(f"{source}: position_embedding_type {position_type!r} is not supported (only 'absolute')")
    act = hf.get("hidden_act", "gelu")
    if act not in _ACTIVATIONS:
        raise ValueError(f"{source}: hidden_act {act!r} is not supported; supported: {sorted(_ACTIVATIONS)}")
    roberta = SUPPORTED_MODEL_TYPES[model_type] == "roberta"
    pad = hf.get("pad_token_id")
    pad = (1 if roberta else 0) if pad is None else int(pad)
    # RoBERTa numbers real tokens from pad + 1 (fairseq), so its 514-row table holds 512 positions.
    offset = pad + 1 if roberta else 0
    return TextEncoderConfig(
        vocab_size=int(hf["vocab_size"]),
        d_model=int(hf["hidden_size"]),
        n_layers=int(hf["num_hidden_layers"]),
        n_heads=int(hf["num_attention_heads"]),
        d_ff=int(hf["intermediate_size"]),
        max_positions=int(hf["max_position_embeddings"]) - offset,
        position_offset=offset,
        type_vocab_size=int(hf.get("type_vocab_size", 2)),
        pad_token_id=pad,
        layer_norm_eps=float(hf.get("layer_norm_eps", 1e-12)),
        dropout=float(hf.get("hidden_dropout_prob", 0.1)),
        activation=_ACTIVATIONS[act],
        norm="post",
        pooler=True,
        attention=AttentionConfig(
            d_model=int(hf["hidden_size"]),
            n_heads=int(hf["num_attention_heads"]),
            kind="full",
            dropout=float(hf.get("attention_probs_dropout_prob", 0.1)),
            bias=True,
        ),
        sparsity=SparsityConfig(enabled=False),
    )


def hf_encoder_keys(n_layers: int, pooler: bool) -> dict[str, str]:
    """Every weight name of an HF encoder (prefix stripped) -> our name."""
    modules = dict(_TOP_NAMES)
    if pooler:
        modules.update(_POOLER_NAMES)
    for i in range(n_layers):
        for hf_name, ours in _LAYER_NAMES.items():
            modules[f"encoder.layer.{i}.{hf_name}"] = f"blocks.{i}.{ours}"
    keys = {}
    for hf_name, ours in modules.items():
        params = ("weight",) if "embeddings." in hf_name and "LayerNorm" not in hf_name else ("weight", "bias")
        for p in params:
            keys[f"{hf_name}.{p}"] = f"{ours}.{p}"
    return keys


@dataclass
class ConvertedState:
    """An HF state dict split into our encoder's weights and the rest."""

    encoder: dict[str, Tensor]
    """Encoder weights under our names."""
    others: dict[str, Tensor]
    """Weights outside the encoder (task heads such as ``cls.predictions.*`` or ``lm_head.*``), HF names."""
    has_pooler: bool
    """Whether the checkpoint holds pooler weights."""


def _normalise(key: str) -> str:
    # Checkpoints from before transformers 2.x name LayerNorm parameters gamma/beta.
    if key.endswith(".gamma"):
        return key[: -len("gamma")] + "weight"
    if key.endswith(".beta"):
        return key[: -len("beta")] + "bias"
    return key


def convert_hf_state_dict(state: dict[str, Tensor], n_layers: int, source: str) -> ConvertedState:
    """Rename an HF BERT/RoBERTa state dict to ours.

    Args:
        state: HF weights, with or without the ``bert.``/``roberta.`` prefix of task models.
        n_layers: the number of layers config.json declares.
        source: where the weights came from, for error messages.

    Raises:
        ValueError: encoder weights are missing or unexpected (names listed).
    """
    encoder_state: dict[str, Tensor] = {}
    others: dict[str, Tensor] = {}
    found: dict[str, Tensor] = {}
    for key, value in state.items():
        key = _normalise(key)
        for prefix in ("bert.", "roberta."):
            if key.startswith(prefix) and key[len(prefix) :].startswith(_ENCODER_ROOTS):
                key = key[len(prefix) :]
                break
        if key.startswith(_ENCODER_ROOTS):
            if key not in _IGNORED:
                found[key] = value
        else:
            others[key] = value
    has_pooler = any(k.startswith("pooler.") for k in found)
    names = hf_encoder_keys(n_layers, has_pooler)
    unexpected = sorted(set(found) - set(names))
    missing = sorted(set(names) - set(found))
    if unexpected or missing:
        raise ValueError(
            f"{source}: checkpoint does not match a {n_layers}-layer BERT/RoBERTa encoder; "
            f"missing: {_short(missing)}; unexpected: {_short(unexpected)}"
        )
    for hf_name, ours in names.items():
        encoder_state[ours] = found[hf_name]
    return ConvertedState(encoder=encoder_state, others=others, has_pooler=has_pooler)


def _short(keys: list[str], limit: int = 8) -> str:
    if not keys:
        return "none"
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


# MLM head weights of BertForMaskedLM / RobertaForMaskedLM -> ours in MLMHead. The decoder weight is
# tied to the word embeddings and not stored separately by us.
_MLM_HEAD_NAMES = {
    "cls.predictions": {
        "transform.dense.weight": "dense.weight",
        "transform.dense.bias": "dense.bias",
        "transform.LayerNorm.weight": "norm.weight",
        "transform.LayerNorm.bias": "norm.bias",
        "bias": "bias",
    },
    "lm_head": {
        "dense.weight": "dense.weight",
        "dense.bias": "dense.bias",
        "layer_norm.weight": "norm.weight",
        "layer_norm.bias": "norm.bias",
        "bias": "bias",
    },
}


def convert_hf_mlm_head(others: dict[str, Tensor]) -> dict[str, Tensor] | None:
    """Our MLMHead weights from an HF masked-LM checkpoint's head weights, None when it has no MLM head."""
    for root, names in _MLM_HEAD_NAMES.items():
        if all(f"{root}.{hf}" in others for hf in names):
            return {ours: others[f"{root}.{hf}"] for hf, ours in names.items()}
    return None
