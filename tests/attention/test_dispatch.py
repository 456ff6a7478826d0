"""The dispatch point: input validation errors and the backend registry."""

import typing

import pytest
import torch

from hybridformer.attention import ATTENTION_BACKENDS, AttentionConfig, hybrid_attention, register_backend
from hybridformer.attention.blocked import blocked_attention


def _qkv(batch=2, heads=2, n=10, dim=4, dtype=torch.float32):
    torch.manual_seed(0)
    return [torch.randn(batch, heads, n, dim, dtype=dtype) for _ in range(3)]


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(q=torch.randn(2, 10, 4)), r"q: expected shape \(B, H, N, D\), got \(2, 10, 4\)"),
        (dict(k=torch.randn(2, 2, 9, 4)), r"k, v: expected the shape of q \(2, 2, 10, 4\), got k \(2, 2, 9, 4\)"),
        (dict(v=torch.randn(2, 2, 10, 4, dtype=torch.float64)), r"k, v: expected the dtype of q"),
        (dict(q=torch.zeros(2, 2, 10, 4, dtype=torch.long)), r"q: expected a floating dtype, got torch.int64"),
        (dict(window=0), r"window: expected an int >= 1, got 0"),
        (dict(window=2.0), r"window: expected an int >= 1, got 2.0"),
        (dict(local="global"), r"local: expected 'block' or 'sliding', got 'global'"),
        (dict(global_indices=torch.tensor([[0, 10], [1, 2]])), r"global_indices: entries must lie in \[-1, N\) = \[-1, 10\), got min 0, max 10"),
        (dict(global_indices=torch.tensor([[0, -2], [1, 2]])), r"global_indices: .*got min -2"),
        (dict(global_indices=torch.zeros(2, 2)), r"global_indices: expected an integer \(Long\) Tensor, got torch.float32"),
        (dict(global_indices=torch.zeros(3, 2, dtype=torch.long)), r"global_indices: expected shape \(B, K\) = \(2, K\) or .*\(2, 3, K\).*got \(3, 2\)"),
        (dict(global_indices=torch.zeros(2, 4, 1, dtype=torch.long)), r"global_indices: .*got \(2, 4, 1\)"),
        (dict(key_padding_mask=torch.ones(2, 10)), r"key_padding_mask: expected a bool Tensor .*got torch.float32"),
        (dict(key_padding_mask=torch.ones(2, 9, dtype=torch.bool)), r"key_padding_mask: expected shape \(B, N\) = \(2, 10\), got \(2, 9\)"),
        (dict(global_indices=torch.zeros(2, 3, 1, dtype=torch.long), global_queries_attend_all=True), r"global_queries_attend_all: needs one global set per sequence"),
        (dict(scale=float("nan")), r"scale: expected a finite float"),
        (dict(backend="cuda-magic"), r"backend: expected 'auto' or one of \[.*'blocked'.*\], got 'cuda-magic'"),
    ],
    ids=lambda x: str(x)[:40] if isinstance(x, dict) else "",
)
def test_bad_input_is_a_value_error_naming_the_argument(change, match):
    q, k, v = _qkv()
    args = dict(q=q, k=k, v=v, window=4)
    args.update(change)
    with pytest.raises(ValueError, match=match):
        hybrid_attention(args.pop("q"), args.pop("k"), args.pop("v"), **args)


def test_registered_backend_is_used_by_name():
    calls = []

    def doubled(q, k, v, **rule):
        calls.append(rule)
        return 2 * blocked_attention(q, k, v, **rule)

    register_backend("doubled", doubled)
    try:
        q, k, v = _qkv()
        idx = torch.tensor([[1, 2], [3, -1]])
        out = hybrid_attention(q, k, v, window=4, global_indices=idx, backend="doubled")
        torch.testing.assert_close(out, 2 * hybrid_attention(q, k, v, window=4, global_indices=idx))
        assert calls[0]["window"] == 4 and calls[0]["local"] == "block" and calls[0]["scale"] is None
    finally:
        del ATTENTION_BACKENDS["doubled"]


def test_int32_indices_accepted():
    q, k, v = _qkv()
    idx = torch.tensor([[1, 2], [3, -1]])
    torch.testing.assert_close(
        hybrid_attention(q, k, v, window=4, global_indices=idx.int()),
        hybrid_attention(q, k, v, window=4, global_indices=idx),
    )


def test_every_config_backend_is_registered():
    choices = set(typing.get_args(typing.get_type_hints(AttentionConfig)["backend"]))
    assert choices - {"auto"} <= set(ATTENTION_BACKENDS)
    assert {"blocked", "flex", "reference"} <= choices
