"""The multimodal model: flavors, meta-device init, save/load, heads, mixed batches, generation."""

from __future__ import annotations

import pytest
import torch
import torchvision

from hybridformer.data.sources import minilm_path
from hybridformer.encoders.text import TextEncoder
from hybridformer.models.multimodal import MultimodalModel
from hybridformer.models.multimodal_checkpoint import build_multimodal
from hybridformer.models.multimodal_config import HeadsConfig
from hybridformer.models.multimodal_flavors import base_config, multimodal_base, multimodal_tiny, tiny_config
from hybridformer.registry import save_model

HEADS = HeadsConfig(num_text_labels=3, num_image_labels=4, num_answers=5, answers=list("abcde"), embed_dim=32)


def _count(module):
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = multimodal_tiny(HEADS).eval()
    for block in model.decoder.blocks:  # open the gates, so the context really changes the text
        torch.nn.init.constant_(block.cross_attention.gate, 0.8)
    return model


def _batch(seed=0, b=3):
    g = torch.Generator().manual_seed(seed)
    return dict(
        input_ids=torch.randint(1000, 3000, (b, 7), generator=g),
        images=torch.randn(b, 3, 32, 32, generator=g),
        videos=torch.randn(b, 3, 8, 32, 32, generator=g),
    )


def test_meta_build_then_init_weights_equals_the_eager_flavor():
    torch.manual_seed(3)
    eager = multimodal_tiny(HEADS, video=False)
    with torch.device("meta"):
        meta = build_multimodal(tiny_config(HEADS, video=False))
    meta.to_empty(device="cpu")
    torch.manual_seed(3)
    meta.init_weights()
    expected = eager.state_dict()
    got = meta.state_dict()
    assert got.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(got[name], tensor), name


def test_tiny_is_small_and_its_trunks_are_torchvisions_one_block_resnets():
    import torchvision
    from torchvision.models.video import resnet as vr

    with torch.device("meta"):
        model = build_multimodal(tiny_config(HEADS))
        resnet10 = torchvision.models.resnet.ResNet(torchvision.models.resnet.BasicBlock, [1, 1, 1, 1])
        mc3_10 = vr.VideoResNet(vr.BasicBlock, [vr.Conv3DSimple] + [vr.Conv3DNoTemporal] * 3, [1, 1, 1, 1], vr.BasicStem)

    def upto_layer3(net):
        return sum(p.numel() for n, p in net.named_parameters() if not n.startswith(("layer4.", "fc.")))

    assert _count(model.image_encoder.trunk) == upto_layer3(resnet10) == 1_232_704
    assert _count(model.video_encoder.trunk) == upto_layer3(mc3_10)
    vocab_tables = model.text_encoder.embeddings.word_embeddings.weight.numel() * 2  # + the decoder's (tied head)
    assert vocab_tables == 2 * 30522 * 128
    assert _count(model) < 12_000_000  # 7.8M of it the two 30,522-word tables
    assert model.image_encoder.config.num_tokens == 4  # 32x32 -> a 2x2 map of 256 channels


def test_save_and_load_round_trip_exactly(tiny, tmp_path):
    from hybridformer.data.tokenizer import minilm_tokenizer

    save_model(tiny, tmp_path / "m", tokenizer=minilm_tokenizer())
    assert (tmp_path / "m" / "tokenizer.json").is_file()
    loaded = MultimodalModel.from_pretrained(tmp_path / "m").eval()
    assert loaded.config == tiny.config
    state = tiny.state_dict()
    assert loaded.state_dict().keys() == state.keys()
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items())
    batch = _batch()
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, tiny(**batch).logits)


def test_loading_a_folder_that_is_not_a_model_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="hybridformer.json"):
        MultimodalModel.from_pretrained(tmp_path)
    (tmp_path / "hybridformer.json").write_text('{"architecture": "TextClassifier", "format_version": 2, "config": {}}')
    with pytest.raises(ValueError, match="not a MultimodalModel"):
        MultimodalModel.from_pretrained(tmp_path)


def test_base_has_the_articles_sizes():
    with torch.device("meta"):
        base = multimodal_base()
        roberta_trunk = torchvision.models.resnet152()
    selection = sum(_count(b.attention.pooled) for b in base.text_encoder.blocks)  # the default selection
    assert _count(base.text_encoder) - selection == 124_645_632  # Hugging Face RobertaModel (roberta-base)
    trunk_params = _count(roberta_trunk) - _count(roberta_trunk.fc)
    assert _count(base.image_encoder.trunk) == trunk_params
    assert len(base.decoder.blocks) == 12 and base.decoder.config.d_model == 768
    assert base.config == base_config()
    assert 350e6 < _count(base) < 450e6


def test_an_example_without_a_modality_equals_it_run_without(tiny):
    batch = _batch()
    image_mask = torch.tensor([True, False, True])
    with torch.no_grad():
        mixed = tiny(batch["input_ids"], images=batch["images"], image_mask=image_mask)
        alone = tiny(batch["input_ids"][1:2])
        with_image = tiny(batch["input_ids"][2:3], images=batch["images"][2:3])
    torch.testing.assert_close(mixed.logits[1:2], alone.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mixed.logits[2:3], with_image.logits, atol=1e-5, rtol=1e-5)
    assert (mixed.logits[2] - tiny(batch["input_ids"][2:3]).logits[0]).abs().max() > 1e-4


def test_heads_shapes_and_contrastive_embeddings_are_unit_norm(tiny):
    batch = _batch()
    with torch.no_grad():
        out = tiny(**batch)
        itc = tiny.contrastive(batch["input_ids"], images=batch["images"])
        text = tiny.classify_text(batch["input_ids"])
        image = tiny.classify_image(batch["images"])
    assert out.logits.shape == (3, 7, 30522) and out.fused.shape == (3, 128)
    assert out.itm_logits.shape == (3, 2) and out.answer_logits.shape == (3, 5)
    assert text.logits.shape == (3, 3) and image.logits.shape == (3, 4)
    for emb in (itc.text_embeddings, itc.image_embeddings):
        torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3))


def test_fused_state_is_the_last_real_token(tiny):
    batch = _batch()
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[0, 4:] = False
    with torch.no_grad():
        padded = tiny(batch["input_ids"], attention_mask=mask, images=batch["images"])
        short = tiny(batch["input_ids"][:1, :4], images=batch["images"][:1])
    torch.testing.assert_close(padded.fused[:1], short.fused, atol=1e-5, rtol=1e-5)


def test_missing_parts_are_clear_errors():
    model = multimodal_tiny(video=False)
    with pytest.raises(ValueError, match="classify_image: the model has no image head"):
        model.classify_image(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="images"):
        model(torch.ones(1, 3, dtype=torch.long), images=torch.randn(1, 1, 32, 32))  # wrong channels
    with pytest.raises(ValueError, match="videos: this model has no video encoder"):
        model(torch.ones(1, 3, dtype=torch.long), videos=torch.randn(1, 3, 8, 32, 32))
    with pytest.raises(ValueError, match="image_mask"):
        model(torch.ones(2, 3, dtype=torch.long), images=torch.randn(2, 3, 32, 32), image_mask=torch.ones(2))


def test_generate_with_an_image_and_video_cached_equals_uncached(tiny):
    batch = _batch()
    prompts = torch.tensor([[101, 1037, 2000], [0, 101, 1999], [0, 0, 101]])
    mask = prompts != 0
    kwargs = dict(images=batch["images"], videos=batch["videos"], video_mask=torch.tensor([False, True, True]),
                  max_new_tokens=6)
    cached = tiny.generate(prompts, mask, **kwargs)
    uncached = tiny.generate(prompts, mask, use_cache=False, **kwargs)
    assert torch.equal(cached.sequences, uncached.sequences)
    captions = tiny.generate(images=batch["images"], max_new_tokens=3)  # no prompt: every one is [bos]
    bos = torch.full((3, 1), 101)
    assert torch.equal(captions.sequences, tiny.generate(bos, images=batch["images"], max_new_tokens=3).sequences)


def test_text_encoder_can_start_from_the_bundled_minilm():
    model = multimodal_tiny(text_encoder=minilm_path(), video=False).eval()
    reference = TextEncoder.from_pretrained(minilm_path()).eval()
    ids = torch.tensor([[101, 7592, 2088, 102]])
    with torch.no_grad():
        assert torch.equal(model.text_encoder(ids).last_hidden_state, reference(ids).last_hidden_state)
        out = model(ids, context_ids=ids, images=torch.randn(1, 3, 32, 32))
    assert model.decoder.config.text_dim == 384 and out.logits.shape == (1, 4, 30522)
