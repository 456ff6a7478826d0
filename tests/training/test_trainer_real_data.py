"""End to end on real data: sentiment split -> MiniLM tokenizer -> bucketed batches -> Trainer -> accuracy."""

from __future__ import annotations

import torch
from torch import nn

from hybridformer.data import LengthBucketBatchSampler, TextCollator, minilm_tokenizer, sentiment_splits, token_lengths
from hybridformer.losses import ClassificationObjective
from hybridformer.models import ClassifierOutput
from hybridformer.training import Trainer, TrainConfig


class BagOfEmbeddings(nn.Module):
    def __init__(self, vocab: int, n_labels: int, dim: int = 32):
        super().__init__()
        self.embed = nn.EmbeddingBag(vocab, dim, mode="sum")
        self.head = nn.Linear(dim, n_labels)

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        weights = attention_mask.float()  # (B, N): padding contributes nothing to the mean
        pooled = self.embed(input_ids, per_sample_weights=weights / weights.sum(1, keepdim=True))  # (B, dim)
        logits = self.head(pooled)
        return ClassifierOutput(logits=logits, aux_loss=logits.new_zeros(()), gate_stats=[])


def test_bag_of_embeddings_learns_real_sentiment(tmp_path):
    splits = sentiment_splits()
    train = splits.train.subset(range(3000))
    tok = minilm_tokenizer()
    collate = TextCollator(tok, max_length=64)
    sampler = LengthBucketBatchSampler(token_lengths(train, tok, 64), 32, seed=0)
    torch.manual_seed(0)
    model = BagOfEmbeddings(len(tok), train.num_labels)
    cfg = TrainConfig(lr=2e-2, weight_decay=0.0, epochs=2, out_dir=str(tmp_path), progress_bar=False,
                      tensorboard=False, device="cpu", precision="fp32", log_every=50)

    val = splits.validation

    def accuracy(m):
        with torch.no_grad():
            batch = collate([val[i] for i in range(len(val))])
            labels = batch.pop("labels")
            return {"accuracy": (m(**batch).logits.argmax(-1) == labels).float().mean().item()}

    result = Trainer(model, ClassificationObjective(), train, cfg, collate, batch_sampler=sampler, eval_fn=accuracy).fit()
    majority = max(val.label_counts().values()) / len(val)  # 0.578
    assert result.eval_metrics["accuracy"] > majority + 0.08  # 0.699 at the time of writing
    assert result.final_step == 2 * len(sampler)
