"""The decoder's answer objective: sequences built from question and answer, loss on the answer tokens only."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hybridformer.losses import VQAAnswerLMObjective, answer_sequences
from multimodal_small import small_model


def test_answer_sequences_join_question_and_answer_and_target_only_the_answer():
    # [CLS]=1 [SEP]=2; questions "7 8" and "9", answers "5 6" and "4"
    q = torch.tensor([[1, 7, 8, 2], [1, 9, 2, 0]])
    qm = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    a = torch.tensor([[1, 5, 6, 2], [1, 4, 2, 0]])
    am = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    ids, mask, targets = answer_sequences(q, qm, a, am)
    assert ids.tolist() == [[1, 7, 8, 5, 6, 2], [1, 9, 4, 2, 0, 0]]
    assert mask.tolist() == [[True] * 6, [True] * 4 + [False] * 2]
    # position t predicts token t+1: the answer "5 6 [SEP]" is predicted from positions 2, 3, 4
    assert targets.tolist() == [[-100, -100, 5, 6, 2, -100], [-100, 4, 2, -100, -100, -100]]


def test_loss_is_the_cross_entropy_of_the_answer_tokens():
    model = small_model(seed=1).eval()
    q = torch.tensor([[1, 7, 8, 2], [1, 9, 2, 0]])
    qm = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    a = torch.tensor([[1, 5, 6, 2], [1, 4, 2, 0]])
    am = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    images = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    out = VQAAnswerLMObjective()(model, {"input_ids": q, "attention_mask": qm, "answer_ids": a,
                                         "answer_attention_mask": am, "images": images})
    # by hand: each question's own sequence through the model, the answer tokens' negative log-likelihoods
    nll = []
    for row, seq, start in ((0, [1, 7, 8, 5, 6, 2], 2), (1, [1, 9, 4, 2], 1)):
        logp = F.log_softmax(model(torch.tensor([seq]), images=images[row:row + 1]).logits[0].double(), -1)
        nll += [-logp[t, seq[t + 1]] for t in range(start, len(seq) - 1)]
    assert torch.allclose(out.loss.double(), torch.stack(nll).mean(), atol=1e-5)
    assert 0 <= float(out.metrics["answer_token_accuracy"]) <= 1
