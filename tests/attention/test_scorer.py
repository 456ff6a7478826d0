"""The token scorer: top-k selection against brute force, its gradient against a dense reference with
an explicit score bias, and a retrieval task that learned selection solves and local attention cannot."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from hybridformer.attention import AttentionConfig, HybridAttention, dense_mask
from hybridformer.attention.scorer import select_prefix_topk, select_topk, selected_mask, straight_through_bias

D_MODEL, HEADS = 16, 2


def brute_force_top(scores: Tensor, eligible: Tensor, k: int) -> set[int]:
    """Positions of the k best eligible scores of one sequence (scores are distinct)."""
    ranked = sorted((-float(scores[j]), j) for j in range(len(scores)) if eligible[j])
    return {j for _, j in ranked[:k]}


def as_set(row: Tensor) -> set[int]:
    members = [j for j in row.tolist() if j >= 0]
    assert len(members) == len(set(members)), f"duplicate selection {row.tolist()}"
    return set(members)


@pytest.mark.parametrize("n, k", [(1, 2), (9, 3), (9, 20)])
def test_select_topk_matches_brute_force(n, k):
    torch.manual_seed(0)
    scores = torch.randn(3, n)
    mask = torch.rand(3, n) > 0.3
    mask[:, 0] = True
    indices = select_topk(scores, k, mask)
    assert indices.shape == (3, k) and indices.dtype == torch.long
    for b in range(3):
        expected = brute_force_top(scores[b], mask[b], k)
        assert as_set(indices[b]) == expected
        assert int((indices[b] < 0).sum()) == k - len(expected)  # empty slots are -1


@pytest.mark.parametrize("n, window, k", [(1, 4, 2), (19, 4, 3), (16, 4, 40), (10, 3, 1)])
def test_select_prefix_topk_matches_brute_force(n, window, k):
    torch.manual_seed(0)
    scores = torch.randn(2, n)
    mask = torch.rand(2, n) > 0.3
    sets = select_prefix_topk(scores, k, window, mask)
    n_blocks = -(-n // window)
    assert sets.shape == (2, n_blocks, k)
    for b in range(2):
        for block in range(n_blocks):
            eligible = mask[b] & (torch.arange(n) < block * window)  # earlier blocks only
            assert as_set(sets[b, block]) == brute_force_top(scores[b], eligible, k)


def test_pinned_positions_are_always_selected_and_the_rest_by_score():
    torch.manual_seed(0)
    scores = torch.randn(3, 12)
    scores[:, 0] = -10.0  # the lowest score: only pinning can select it
    mask = torch.ones(3, 12, dtype=torch.bool)
    mask[2, :2] = False  # left padding: a pinned position that is padding stays unselected
    indices = select_topk(scores, 4, mask, pinned=1)
    for b in range(2):
        assert int(indices[b, 0]) == 0
        assert as_set(indices[b, 1:]) == brute_force_top(scores[b], mask[b] & (torch.arange(12) > 0), 3)
    assert 0 not in as_set(indices[2]) and as_set(indices[2]) == brute_force_top(scores[2], mask[2], 4)


def test_pinned_cls_with_global_queries_reads_the_whole_sequence():
    torch.manual_seed(0)
    cfg = AttentionConfig(selection="scorer", d_model=D_MODEL, n_heads=HEADS, window=4, global_k=2, pinned_global=1,
                          global_queries_attend_all=True)
    layer = HybridAttention(cfg).eval()
    full = HybridAttention(AttentionConfig(selection="scorer", d_model=D_MODEL, n_heads=HEADS, kind="full")).eval()
    full.load_state_dict(layer.state_dict(), strict=False)  # same projections; full has no scorer
    x = torch.randn(2, 16, D_MODEL)
    out = layer(x)
    assert out.global_indices[:, 0].tolist() == [0, 0]
    # [CLS]'s row is dense attention over all 16 keys, though its window holds only 4 of them.
    torch.testing.assert_close(out.hidden_states[:, 0], full(x).hidden_states[:, 0], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="pinned_global: must be in"):
        AttentionConfig(global_k=2, pinned_global=3)
    with pytest.raises(ValueError, match="pinned_global: needs causal=false"):
        AttentionConfig(global_k=2, pinned_global=1, causal=True)


def test_selection_noise_explores_in_training_only():
    torch.manual_seed(0)
    layer = HybridAttention(AttentionConfig(selection="scorer", d_model=D_MODEL, n_heads=HEADS, window=4, global_k=2))
    nn.init.normal_(layer.scorer.net.weight)
    x = torch.randn(4, 16, D_MODEL)
    evaluated = layer.eval()(x).global_indices
    assert torch.equal(layer(x).global_indices, evaluated)
    trained = [layer.train()(x).global_indices for _ in range(5)]
    assert any(not torch.equal(t, evaluated) for t in trained)
    layer.config.selection_noise = 0.0
    assert torch.equal(layer(x).global_indices, evaluated)


def test_scorer_starts_with_equal_scores():
    layer = HybridAttention(AttentionConfig(selection="scorer", d_model=D_MODEL, n_heads=HEADS, scorer_hidden=8))
    scores = layer.scorer(torch.randn(2, 5, D_MODEL))
    assert scores.shape == (2, 5) and bool((scores == scores[0, 0]).all())


def test_straight_through_bias_is_zero_with_gradient_on_selected_only():
    scores = torch.randn(2, 6, requires_grad=True)
    selected = selected_mask(torch.tensor([[4, 1, -1], [0, 5, 5]]), 6)
    bias = straight_through_bias(scores, selected)
    assert bool((bias == 0).all())
    bias.sum().backward()
    torch.testing.assert_close(scores.grad, selected.float())


def biased_attention(q: Tensor, k: Tensor, v: Tensor, sees: Tensor, bias: Tensor) -> Tensor:
    """Dense masked softmax attention with `bias[b, j]` added to every logit of key j (float64)."""
    logits = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5 + bias[:, None, None, :]  # (B, H, N, N)
    sees = sees[:, None]
    probs = torch.softmax(logits.masked_fill(~sees, float("-inf")).masked_fill(~sees.any(-1, keepdim=True), 0), -1)
    return (probs @ v) * sees.any(-1, keepdim=True)


@pytest.mark.parametrize(
    "fields",
    [
        dict(combine="union", local="block"),
        dict(combine="union", local="sliding", global_queries_attend_all=True),
        dict(combine="union", local="sliding", causal=True),
        dict(combine="gated", local="block"),
        dict(combine="gated", local="sliding", causal=True),
    ],
    ids=lambda f: "-".join(str(v) for v in f.values()),
)
def test_scorer_gradient_equals_dense_score_weighted_reference(fields):
    torch.manual_seed(0)
    layer = HybridAttention(AttentionConfig(selection="scorer", d_model=D_MODEL, n_heads=HEADS, window=4, global_k=3, **fields))
    nn.init.normal_(layer.scorer.net.weight)
    layer = layer.double().eval()
    cfg = layer.config
    batch, n = 2, 13
    x = torch.randn(batch, n, D_MODEL, dtype=torch.float64)
    mask = torch.ones(batch, n, dtype=torch.bool)
    mask[1, :2] = False
    weights = torch.randn(batch, n, D_MODEL, dtype=torch.float64)

    out = layer(x, mask)
    (grad,) = torch.autograd.grad((out.hidden_states * weights).sum(), layer.scorer.net.weight)
    assert grad.abs().max() > 1e-6

    def split(t: Tensor) -> Tensor:
        return t.view(batch, n, HEADS, -1).transpose(1, 2)  # (B, H, N, D)

    q, k, v = split(layer.q_proj(x)), split(layer.k_proj(x)), split(layer.v_proj(x))
    indices = out.global_indices
    bias = straight_through_bias(layer.scorer(x), selected_mask(indices, n)).double()
    if cfg.combine == "union":
        sees = dense_mask(
            batch, n, window=4, local=cfg.local, global_indices=indices, causal=cfg.causal, key_padding_mask=mask,
            global_queries_attend_all=cfg.global_queries_attend_all,
        )
        attended = biased_attention(q, k, v, sees, bias)
    else:
        near_sees = dense_mask(batch, n, window=4, local=cfg.local, causal=cfg.causal, key_padding_mask=mask)
        far_sees = torch.zeros(batch, n, n, dtype=torch.bool)
        for b in range(batch):
            for i in range(n):
                for j in (indices[b, i // 4] if cfg.causal else indices[b]).tolist():
                    far_sees[b, i, j] = j >= 0 or far_sees[b, i, j]
        gates = torch.sigmoid(layer.gate_proj(x)).view(batch, n, HEADS, 2).transpose(1, 2)  # (B, H, N, 2)
        near = biased_attention(q, k, v, near_sees, torch.zeros_like(bias))
        attended = gates[..., :1] * near + gates[..., 1:] * biased_attention(q, k, v, far_sees, bias)
    expected = layer.o_proj(attended.transpose(1, 2).reshape(batch, n, D_MODEL))
    torch.testing.assert_close(out.hidden_states, expected, atol=1e-10, rtol=0)
    (expected_grad,) = torch.autograd.grad((expected * weights).sum(), layer.scorer.net.weight)
    torch.testing.assert_close(grad, expected_grad, atol=1e-10, rtol=1e-8)


# The retrieval task: position 0 (block 0) must output the class carried by the one marked token, which
# sits in a later block. Every token carries a random class one-hot, so only the marked one counts.
CLASSES, N, WINDOW = 4, 16, 4


def retrieval_batch(generator: torch.Generator, batch: int) -> tuple[Tensor, Tensor]:
    x = 0.5 * torch.randn(batch, N, D_MODEL, generator=generator)
    classes = torch.randint(0, CLASSES, (batch, N), generator=generator)
    x[..., :CLASSES] += 2.0 * nn.functional.one_hot(classes, CLASSES)
    where = torch.randint(WINDOW, N, (batch,), generator=generator)  # outside block 0
    rows = torch.arange(batch)
    x[rows, where, CLASSES] += 3.0  # the marker
    x[:, 0, CLASSES + 1] += 3.0  # the query flag
    return x, classes[rows, where], where


class Retriever(nn.Module):
    def __init__(self, global_k: int, **fields) -> None:
        super().__init__()
        fields = {"selection": "scorer", **fields}
        config = AttentionConfig(d_model=D_MODEL, n_heads=HEADS, window=WINDOW, global_k=global_k, **fields)
        self.attention = HybridAttention(config)
        self.head = nn.Linear(D_MODEL, CLASSES)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        out = self.attention(x)
        return self.head(out.hidden_states[:, 0]), out.global_indices


def retrieval_accuracy(global_k: int, steps: int = 200, with_recall: bool = False, **fields):
    """Eval accuracy after training (and, with_recall, the fraction of sequences whose marked token is
    in the set query 0 sees)."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = Retriever(global_k, **fields)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        x, y, _ = retrieval_batch(generator, 64)
        loss = nn.functional.cross_entropy(model(x)[0], y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    x, y, where = retrieval_batch(torch.Generator().manual_seed(1234), 512)
    with torch.no_grad():
        logits, chosen = model.eval()(x)
    accuracy = (logits.argmax(-1) == y).float().mean().item()
    if not with_recall:
        return accuracy
    first = chosen if chosen.dim() == 2 else chosen[:, 0]  # (B, K) the set of query block 0
    return accuracy, (first == where[:, None]).any(-1).float().mean().item()


@pytest.fixture
def one_thread():
    """Tiny tensors gain nothing from intra-op threads, and on a busy shared CPU two spinning threads
    made these runs ~10x slower; one thread also makes the float reductions run-to-run deterministic."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("combine", ["union", "gated"])
def test_learned_selection_solves_retrieval_that_local_attention_cannot(combine, one_thread):
    assert retrieval_accuracy(global_k=2, combine=combine) >= 0.9


def test_local_only_attention_stays_at_chance_on_retrieval(one_thread):
    assert retrieval_accuracy(global_k=0) <= 0.35
