"""The dispatch point: input validation errors and the backend registry."""

import typing

import pytest
import torch

from hybridformer.attention import (
    ATTENTION_BACKENDS,
    AttentionConfig,
    all_keys_mask,
    hybrid_attention,
    reference_attention,
    register_backend,
)
from hybridformer.attention.blocked import blocked_attention
from hybridformer.attention.masks import MaskSpec


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

    def doubled(q, k, v, spec):
        calls.append(spec)
        return 2 * blocked_attention(q, k, v, spec)

    register_backend("doubled", doubled)
    try:
        q, k, v = _qkv()
        idx = torch.tensor([[1, 2], [3, -1]])
        out = hybrid_attention(q, k, v, window=4, global_indices=idx, backend="doubled")
        torch.testing.assert_close(out, 2 * hybrid_attention(q, k, v, window=4, global_indices=idx))
        spec = calls[0]
        assert isinstance(spec, MaskSpec) and spec.window == 4 and spec.local == "block" and spec.scale is None
        assert torch.equal(spec.global_indices, idx) and spec.key_padding_mask is None and not spec.causal
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


def test_cross_attention_shapes_take_the_dense_path():
    torch.manual_seed(0)
    q = torch.randn(2, 2, 3, 4)
    k, v = torch.randn(2, 2, 7, 4), torch.randn(2, 2, 7, 4)
    pad = torch.tensor([[True] * 7, [False] * 5 + [True] * 2])
    for causal in (False, True):
        want = reference_attention(q, k, v, all_keys_mask(2, 3, 7, causal=causal, key_padding_mask=pad))
        for backend in ("auto", "blocked", "reference"):
            out = hybrid_attention(q, k, v, window=7, causal=causal, key_padding_mask=pad, backend=backend)
            torch.testing.assert_close(out.double(), want, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(window=6), r"k, v: keys of another length than the queries .* window >= Nk = 7; got .* window 6"),
        (dict(local="sliding"), r"k, v: keys of another length .* local 'sliding'"),
        (dict(global_indices=torch.zeros(2, 1, dtype=torch.long)), r"k, v: keys of another length .*global_indices given"),
        (dict(key_padding_mask=torch.ones(2, 3, dtype=torch.bool)), r"key_padding_mask: expected shape \(B, Nk\) = \(2, 7\), got \(2, 3\)"),
    ],
)
def test_cross_attention_shapes_with_a_sparse_mask_are_refused(change, match):
    q, k, v = torch.randn(2, 2, 3, 4), torch.randn(2, 2, 7, 4), torch.randn(2, 2, 7, 4)
    with pytest.raises(ValueError, match=match):
        hybrid_attention(q, k, v, **(dict(window=7) | change))


def test_causal_queries_cannot_outnumber_the_keys():
    q, k = torch.randn(1, 1, 5, 4), torch.randn(1, 1, 3, 4)
    with pytest.raises(ValueError, match=r"causal: the 5 queries must be the last of the 3 keys"):
        hybrid_attention(q, k, k, window=8, causal=True)
