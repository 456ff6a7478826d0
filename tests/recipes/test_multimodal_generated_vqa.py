"""Zero-shot VQA asks each question in the model's chat template: with the decoder's template the
batched, padded prompts give, for every question, the answer the model gives ``[CLS] question``
alone (the format it was trained on); another template asks otherwise."""

from __future__ import annotations

import torch

from hybridformer.data import minilm_tokenizer
from hybridformer.data.multimodal_collate import PixelSpec, VQACollator, stack_pixels
from hybridformer.data.vqa import VQADataset
from hybridformer.models import multimodal_tiny
from hybridformer.models.prompt_format import PromptFormat
from hybridformer.recipes.multimodal_metrics import generated_answers, vqa_generated_accuracy

QUESTIONS = ["what digit is this?", "is this a seven?", "is this number greater than 4?", "is this digit even?"]


def test_generated_vqa_prompts_are_the_templates():
    torch.manual_seed(0)
    model, tok = multimodal_tiny(video=False).eval(), minilm_tokenizer()
    for block in model.decoder.blocks:  # open the cross-attention gates (0 at init) so the image matters
        torch.nn.init.constant_(block.cross_attention.gate, 1.0)
    rng = torch.Generator().manual_seed(0)
    images = {i: torch.randint(0, 256, (3, 28, 28), generator=rng, dtype=torch.uint8) for i in range(len(QUESTIONS))}
    spec = PixelSpec(image_size=32, channels=3)
    answers = []
    for i, question in enumerate(QUESTIONS):  # the reference: one question at a time, "[CLS] question"
        prompt = torch.tensor([[101, *tok(question, add_special_tokens=False)["input_ids"]]])
        out = model.generate(prompt, images=stack_pixels([images[i]], spec), max_new_tokens=6)
        answers.append(generated_answers(out.sequences, 102, tok)[0])
    assert len(set(answers)) > 1, answers
    questions = [{"image_id": i, "question": q, "question_id": i} for i, q in enumerate(QUESTIONS)]
    annotations = {i: {"multiple_choice_answer": a, "answers": [{"answer": a}] * 10} for i, a in enumerate(answers)}
    dataset = VQADataset(questions, annotations, images.__getitem__)
    collate = VQACollator(tok, ["yes", "no"], pixels=spec)
    assert vqa_generated_accuracy(model, dataset, collate, tok) == 1.0
    other = PromptFormat("[CLS]{{ messages[-1].content }} [SEP] the answer is")
    assert vqa_generated_accuracy(model, dataset, collate, tok, prompt_format=other) < 1.0
