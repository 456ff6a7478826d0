"""The float64 oracle itself, against masks and outputs written out by hand."""

import math

import pytest
import torch

from hybridformer.attention import all_keys_mask, dense_mask, reference_attention


def _rows(text: str) -> torch.Tensor:
    """'10.01' style rows -> bool matrix."""
    return torch.tensor([[ch == "1" for ch in row] for row in text.split()], dtype=torch.bool)


def test_block_local_mask():
    expected = _rows("110000 110000 001100 001100 000011 000011")
    assert torch.equal(dense_mask(1, 6, window=2)[0], expected)


def test_block_local_causal_mask_and_partial_last_block():
    expected = _rows("10000 11000 00100 00110 00001")
    assert torch.equal(dense_mask(1, 5, window=2, causal=True)[0], expected)


def test_sliding_mask_symmetric_and_causal():
    # window 4: |i - j| <= 2; causal: i - 4 < j <= i.
    symmetric = _rows("111000 111100 111110 011111 001111 000111")
    causal = _rows("100000 110000 111000 111100 011110 001111")
    assert torch.equal(dense_mask(1, 6, window=4, local="sliding")[0], symmetric)
    assert torch.equal(dense_mask(1, 6, window=4, local="sliding", causal=True)[0], causal)


def test_global_keys_padding_and_global_queries():
    idx = torch.tensor([[4, -1]])
    pad = torch.tensor([[True, True, True, True, True, False]])
    plain = _rows("110010 110010 001110 001110 000010 000010")
    assert torch.equal(dense_mask(1, 6, window=2, global_indices=idx, key_padding_mask=pad)[0], plain)
    attend_all = _rows("110010 110010 001110 001110 111110 000010")
    got = dense_mask(1, 6, window=2, global_indices=idx, key_padding_mask=pad, global_queries_attend_all=True)
    assert torch.equal(got[0], attend_all)


def test_per_block_global_sets_and_causal():
    idx = torch.tensor([[[3], [0], [-1]]])  # block 0 -> key 3, block 1 -> key 0, block 2 -> none
    expected = _rows("100000 110000 101000 101100 000010 000011")
    assert torch.equal(dense_mask(1, 6, window=2, global_indices=idx, causal=True)[0], expected)


def test_per_block_sets_reject_global_queries_attend_all():
    with pytest.raises(ValueError, match="global_queries_attend_all"):
        dense_mask(1, 4, window=2, global_indices=torch.zeros(1, 2, 1, dtype=torch.long), global_queries_attend_all=True)


def test_reference_attention_by_hand():
    q = torch.tensor([[[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]]])  # (1, 1, 3, 2)
    k = torch.tensor([[[[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]]]])
    v = torch.tensor([[[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]]])
    mask = _rows("110 010 000").unsqueeze(0)
    out = reference_attention(q, k, v, mask, scale=1.0)
    w0 = torch.softmax(torch.tensor([1.0, 0.0], dtype=torch.float64), 0)
    assert out.dtype == torch.float64
    assert torch.allclose(out[0, 0, 0], w0[0] * v[0, 0, 0].double() + w0[1] * v[0, 0, 1].double())
    assert torch.equal(out[0, 0, 1], v[0, 0, 1].double())  # a single visible key: exactly its value
    assert torch.equal(out[0, 0, 2], torch.zeros(2, dtype=torch.float64))  # sees nothing: zeros


def test_reference_attention_full_mask_matches_softmax_attention():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4) for _ in range(3))
    full = torch.ones(2, 5, 5, dtype=torch.bool)
    probs = torch.softmax(q.double() @ k.double().transpose(-1, -2) / math.sqrt(4), dim=-1)
    assert torch.allclose(reference_attention(q, k, v, full), probs @ v.double(), atol=1e-12)


def test_all_keys_mask_rectangular_causal_and_padding():
    # 2 queries over 4 keys, causal: the queries sit at positions 2 and 3.
    assert torch.equal(all_keys_mask(1, 2, 4, causal=True)[0], _rows("1110 1111"))
    pad = torch.tensor([[True, False, True, True], [False, False, False, False]])
    got = all_keys_mask(2, 2, 4, causal=True, key_padding_mask=pad)
    assert torch.equal(got[0], _rows("1010 1011"))
    assert torch.equal(got[1], _rows("0000 0000"))
    assert torch.equal(all_keys_mask(1, 3, 2)[0], _rows("11 11 11"))
