"""Meta-device build: construct on "meta", materialise with to_empty, init_weights() under a seed ==
an eager build under the same seed, parameters and buffers alike (what FSDP2/TP need)."""

from __future__ import annotations

import pytest
import torch

from hybridformer.attention import AttentionConfig
from hybridformer.encoders import TextEncoder, TextEncoderConfig
from hybridformer.models import TextClassifier, TextForMaskedLM
from hybridformer.sparsity import SparsityConfig

BUILDERS = {
    "encoder": lambda cfg: TextEncoder(cfg),
    "classifier": lambda cfg: TextClassifier(TextEncoder(cfg), 3),
    "classifier-mean": lambda cfg: TextClassifier(TextEncoder(cfg), 4, pooling="mean"),
    "masked-lm": lambda cfg: TextForMaskedLM(TextEncoder(cfg)),
}


def _config(gates: bool, kind: str, norm: str) -> TextEncoderConfig:
    """`kind` "full", "hybrid" (the default pooled selection) or "hybrid-scorer" (an MLP scorer)."""
    scorer = kind == "hybrid-scorer"
    attention = AttentionConfig(kind=kind.removesuffix("-scorer"), window=8, global_k=4, scorer_hidden=8 if scorer else 0,
                                selection="scorer" if scorer else "pooled")
    return TextEncoderConfig(
        vocab_size=97, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_positions=40, norm=norm,
        attention=attention,
        sparsity=SparsityConfig(enabled=gates, n_groups=4, layer_skip=gates, gate_hidden=8 if gates else 0),
    )


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.parametrize("gates", [False, True])
@pytest.mark.parametrize("kind,norm", [("full", "post"), ("hybrid", "pre"), ("hybrid-scorer", "pre")])
def test_meta_build_then_init_equals_eager_build(name: str, gates: bool, kind: str, norm: str) -> None:
    cfg = _config(gates, kind, norm)
    torch.manual_seed(11)
    eager = BUILDERS[name](cfg)
    with torch.device("meta"):
        lazy = BUILDERS[name](cfg)
    assert all(p.is_meta for p in lazy.parameters())
    lazy.to_empty(device="cpu")
    torch.manual_seed(11)
    lazy.init_weights()
    want, got = eager.state_dict(), lazy.state_dict()
    assert want.keys() == got.keys()
    for key in want:
        assert torch.equal(want[key], got[key]), key
    # And init_weights really draws: another seed gives other weights, the same seed the same again.
    torch.manual_seed(12)
    lazy.init_weights()
    assert not torch.equal(lazy.state_dict()["embeddings.word_embeddings.weight" if name == "encoder" else
                                            "encoder.embeddings.word_embeddings.weight"],
                           want["embeddings.word_embeddings.weight" if name == "encoder" else
                                "encoder.embeddings.word_embeddings.weight"])


def test_init_weights_keeps_the_documented_distributions() -> None:
    cfg = _config(gates=True, kind="hybrid", norm="post")
    torch.manual_seed(0)
    model = TextClassifier(TextEncoder(cfg), 3)
    emb = model.encoder.embeddings
    assert emb.word_embeddings.weight[cfg.pad_token_id].abs().sum() == 0  # padding row zero
    assert 0.015 < emb.word_embeddings.weight.std().item() < 0.025  # BERT's N(0, 0.02)
    block = model.encoder.blocks[0]
    pooling = block.attention.pooled.pool_proj
    assert pooling.weight.abs().sum() == 0 and pooling.bias.abs().sum() == 0  # mean pooling at start
    scorer_out = TextEncoder(_config(gates=True, kind="hybrid-scorer", norm="post")).blocks[0].attention.scorer.net[-1]
    assert scorer_out.weight.abs().sum() == 0 and scorer_out.bias.abs().sum() == 0  # equal scores at start
    gate = block.ffn.gate
    assert torch.allclose(torch.sigmoid(gate.groups.bias), torch.full_like(gate.groups.bias, gate.target / 0.9526), atol=1e-3)
    assert torch.equal(block.ffn.kept_groups, torch.arange(4))
