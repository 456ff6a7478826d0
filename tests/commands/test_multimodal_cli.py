"""The multimodal dispatch of pretrain / finetune / evaluate: bad input is one line and exit 2 (config)
or 1 (a missing model folder); a real one-step pretraining + evaluation runs end to end (slow)."""

import json

import pytest
import torch

from hybridformer.cli import main


@pytest.mark.parametrize("argv, needle", [
    (["pretrain", "--objectives", "itc,nope", "--model", "tiny"], "objectives"),
    (["finetune", "--task", "segmentation", "--model", "tiny"], "task"),
    (["evaluate", "--task", "vqa", "--model", "tiny", "--data.task", "cifar"], "data.task"),
    (["pretrain", "--objectives", "itc", "--weights.itm", "2"], "weights.itm"),
    (["pretrain", "--objectives", "itc", "--momentum.alpha", "2"], "momentum.alpha"),
])
def test_bad_options_print_one_line_and_exit_2(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


def test_momentum_distillation_is_off_by_default_and_a_flag_turns_it_on():
    from hybridformer.config import load_config
    from hybridformer.recipes.multimodal_common import tokenizer
    from hybridformer.recipes.multimodal_pretrain import MMPretrainConfig, build_pretrain_objective

    assert load_config(MMPretrainConfig).momentum.enabled is False
    config = load_config(MMPretrainConfig, None, ["--momentum.enabled", "true", "--momentum.alpha", "0.3", "--objectives", "itc"])
    assert config.momentum.enabled and config.momentum.alpha == 0.3
    model = torch.nn.Linear(2, 2)  # any module: the teacher is its copy
    objective = build_pretrain_objective(config.objectives, tokenizer(), momentum=config.momentum, model=model)
    assert objective.momentum is not None and objective.momentum.alpha == 0.3
    assert torch.equal(objective.momentum.model.weight, model.weight) and objective.momentum.model is not model
    assert build_pretrain_objective(["itc"], tokenizer()).momentum is None


def test_a_missing_model_folder_is_one_line(tmp_path, capsys):
    assert main(["evaluate", "--task", "retrieval", "--model", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "hybridformer.json" in err[0]


@pytest.mark.slow
def test_pretrain_then_evaluate_end_to_end(tmp_path, capsys):
    run = tmp_path / "mm"
    assert main(["pretrain", "--objectives", "mlm,itc,itm,caption", "--model", "tiny", "--out-dir", str(run),
                 "--train.max_steps", "2", "--train.batch_size", "4", "--train.progress_bar", "false"]) == 0
    record = json.loads((run / "metrics.json").read_text())
    assert record["steps"] == 2 and record["examples_per_s"] > 0
    assert not (run / "checkpoints").exists()  # deleted once the model is saved (train.keep_checkpoints=false)
    assert main(["evaluate", "--task", "retrieval", "--model", str(run / "model"), "--eval_limit", "16",
                 "--out", str(tmp_path / "r.json")]) == 0
    metrics = json.loads((tmp_path / "r.json").read_text())["metrics"]
    assert 0 <= metrics["r1"] <= metrics["r5"] <= 1


def test_help_lists_the_fields_of_the_family_the_flags_select(capsys, tmp_path):
    import pytest

    from hybridformer.registry import load_model, save_model

    save_model(load_model("tiny"), tmp_path / "mm")  # a multimodal teacher folder
    for argv, present, absent in (
        (["distill", "--teacher", str(tmp_path / "mm"), "--help"], ["--student.decoder_layers", "--data.task"],
         ["--student.layers"]),
        (["distill", "--help"], ["--student.layers"], ["--student.decoder_layers"]),
        (["pretrain", "--model", "tiny", "--help"], ["--objectives", "itc", "--data.task", "mnist5k"], ["--corpus."]),
        (["pretrain", "--help"], ["--corpus."], ["mnist5k"]),
        (["finetune", "--task", "vqa", "--help"], ["--task", "--data.train_fraction"], ["--model.init_from"]),
        (["evaluate", "--help"], ["--model-dir", "--data.test_file"], ["--eval_limit"]),
        (["evaluate", "--task", "retrieval", "--help"], ["--eval_limit"], ["--data.test_file"]),
    ):
        with pytest.raises(SystemExit):
            main(argv)
        out = capsys.readouterr().out
        assert all(p in out for p in present) and not any(a in out for a in absent), argv
    main([])
    top = capsys.readouterr().out
    assert all(task in top for task in ("vqa", "caption", "retrieval", "itc"))


@pytest.mark.parametrize("argv, needle", [
    (["finetune", "--task", "caption", "--model", "tiny", "--vqa.answer", "rank"], "vqa.answer"),
    (["evaluate", "--task", "vqa-zeroshot", "--model", "tiny", "--vqa.answer", "classifier"], "vqa.answer"),
    (["evaluate", "--task", "vqa", "--model", "tiny", "--vqa.answer", "vote"], "vqa.answer"),
    (["evaluate", "--task", "vqa-zeroshot", "--model", "tiny", "--vqa.answer", "rank", "--vqa.reference_images", "0"],
     "vqa.reference_images"),
    (["evaluate", "--task", "vqa-zeroshot", "--model", "tiny", "--vqa.answer", "rank", "--vqa.rank_score", "odds"],
     "vqa.rank_score"),
])
def test_bad_vqa_answer_modes_are_one_line(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


def test_vqa_by_answer_ranking_finetunes_the_decoder_and_evaluates(tmp_path, capsys):
    """finetune --vqa.answer rank trains the decoder on the answers (no answer head) and scores by
    ranking; evaluate ranks with it (auto resolves to rank for a model without an answer head)."""
    from hybridformer.models.multimodal import MultimodalModel

    run = tmp_path / "vqa"
    assert main(["finetune", "--task", "vqa", "--vqa.answer", "rank", "--model", "tiny", "--out-dir", str(run),
                 "--train.max_steps", "2", "--train.batch_size", "4", "--train.progress_bar", "false",
                 "--eval_limit", "8"]) == 0
    record = json.loads((run / "metrics.json").read_text())
    assert 0 <= record["metrics"]["vqa_accuracy"] <= 1
    assert MultimodalModel.from_pretrained(run / "model").answer_head is None
    for mode in ("auto", "rank"):
        assert main(["evaluate", "--task", "vqa", "--vqa.answer", mode, "--model", str(run / "model"),
                     "--eval_limit", "8", "--out", str(tmp_path / f"{mode}.json")]) == 0
    assert json.loads((tmp_path / "auto.json").read_text()) == json.loads((tmp_path / "rank.json").read_text())
    assert main(["evaluate", "--task", "vqa", "--vqa.answer", "classifier", "--model", str(run / "model"),
                 "--eval_limit", "8"]) == 1
    assert "use --vqa.answer rank" in capsys.readouterr().err


def test_pmi_ranking_of_a_model_that_ignores_the_image_answers_the_most_frequent_answer(tmp_path):
    """A new model's cross-attention gates are exactly 0: with --vqa.rank_score pmi every answer scores 0,
    the tie goes to the training split's most frequent answer, and the accuracy is the majority
    answer's (the chance row: score(model=None))."""
    from hybridformer.recipes.multimodal_common import MMDataConfig
    from hybridformer.recipes.multimodal_tasks import score

    out = tmp_path / "pmi.json"
    assert main(["evaluate", "--task", "vqa-zeroshot", "--vqa.answer", "rank", "--vqa.rank_score", "pmi",
                 "--vqa.reference_images", "4", "--model", "tiny", "--eval_limit", "16", "--out", str(out)]) == 0
    chance = score("vqa-zeroshot", None, MMDataConfig(), limit=16)["vqa_accuracy"]
    assert json.loads(out.read_text())["metrics"]["vqa_accuracy"] == chance


def test_rank_score_auto_is_pmi_zero_shot_and_likelihood_for_a_fine_tuned_model():
    from hybridformer.recipes.multimodal_tasks import VQAAnswerConfig

    assert VQAAnswerConfig("rank").score_mode("vqa-zeroshot") == "pmi"
    assert VQAAnswerConfig("rank").score_mode("vqa") == "likelihood"
    assert VQAAnswerConfig("rank", rank_score="pmi").score_mode("vqa") == "pmi"
    assert VQAAnswerConfig("rank", rank_score="likelihood").score_mode("vqa-zeroshot") == "likelihood"


def test_opening_candidates_restrict_ranked_answers_to_the_questions_answer_type():
    """--vqa.candidates opening (auto for vqa-zeroshot): every ranked answer is one the training split
    gives to questions of the same opening ("is this ...?" -> yes/no), with likelihood scores of an
    untrained decoder, which without the restriction answer digits to yes/no questions."""
    import torch

    from hybridformer.evaluation.vqa_candidates import OpeningCandidates, opening
    from hybridformer.recipes import multimodal_metrics as mm
    from hybridformer.recipes.multimodal_common import MMDataConfig, load_model, task_data, tokenizer
    from hybridformer.recipes.multimodal_tasks import VQAAnswerConfig

    assert VQAAnswerConfig().candidate_mode("vqa-zeroshot") == "opening" and VQAAnswerConfig().candidate_mode("vqa") == "all"
    torch.manual_seed(0)
    model, tok = load_model("tiny"), tokenizer()
    torch.nn.init.normal_(model.decoder.blocks[0].cross_attention.gate, std=1.0)  # reads the image
    train, test, collate, extra = task_data("vqa", MMDataConfig(seed=0), tok)
    allowed = OpeningCandidates.from_pairs(mm.question_answer_pairs(train), words=2)
    texts = {test[i].question_id: test[i].question for i in mm.spread(len(test), 24)}
    free = mm.vqa_ranked_answers(model, test, collate, tok, extra["answers"], limit=24)
    kept = mm.vqa_ranked_answers(model, test, collate, tok, extra["answers"], limit=24, allowed=allowed)
    assert kept.keys() == free.keys() == texts.keys()
    assert all(kept[q] in allowed.answers[opening(texts[q], 2)] for q in kept)
    assert any(free[q] not in allowed.answers[opening(texts[q], 2)] for q in free)  # the restriction acts
