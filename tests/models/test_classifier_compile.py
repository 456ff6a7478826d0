"""The classifier in eval mode under torch.compile equals eager (full and hybrid attention, padding).

The fast test compiles with the ``aot_eager`` backend and ``fullgraph=True``: Dynamo must capture the
whole forward as one graph (a host sync or a data-dependent shape would be a graph break, an error
here) and AOTAutograd traces it, without Inductor's code generation, which takes about a minute
here; the slow test runs Inductor itself.
"""

from __future__ import annotations

import pytest
import torch

from hybridformer.attention import AttentionConfig
from hybridformer.encoders import TextEncoder, TextEncoderConfig
from hybridformer.models import TextClassifier

from hybridformer.sparsity import SparsityConfig

ATTENTION = {
    "full": AttentionConfig(kind="full"),
    "hybrid-union": AttentionConfig(kind="hybrid", window=8, global_k=4, pinned_global=1, global_queries_attend_all=True),
    "hybrid-gated": AttentionConfig(kind="hybrid", window=8, global_k=4, combine="gated"),
}


def _model_and_batch(attention: AttentionConfig, gates: bool) -> tuple[TextClassifier, dict[str, torch.Tensor]]:
    cfg = TextEncoderConfig(vocab_size=97, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_positions=64,
                            attention=attention, sparsity=SparsityConfig(enabled=gates, n_groups=4))
    torch.manual_seed(0)
    model = TextClassifier(TextEncoder(cfg), 3).eval()
    ids = torch.randint(1, 97, (2, 24))
    mask = torch.ones_like(ids)
    mask[1, 17:] = 0  # one padded example
    ids[1, 17:] = 0
    return model, {"input_ids": ids, "attention_mask": mask}


def _check(name: str, backend: str, gates: bool = False) -> None:
    model, batch = _model_and_batch(ATTENTION[name], gates)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend=backend, fullgraph=True)
    with torch.no_grad():
        want = model(**batch).logits
        got = compiled(**batch).logits
        again = compiled(**batch).logits  # the cached graphs, not a recompile
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(again, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name,gates", [("full", False), ("hybrid-union", True)])
def test_compiled_classifier_equals_eager_in_one_graph(name: str, gates: bool) -> None:
    _check(name, "aot_eager", gates)


@pytest.mark.slow
@pytest.mark.parametrize("gates", [False, True])
@pytest.mark.parametrize("name", sorted(ATTENTION))
def test_inductor_compiled_classifier_equals_eager(name: str, gates: bool) -> None:
    _check(name, "inductor", gates)
