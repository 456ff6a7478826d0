"""The multimodal model (ITC + ITM + captioning) under data and tensor parallelism, on real torchrun
processes (gloo, CPU), against the single-process run on the same global batches (``multimodal_worker.py``).

The contrastive loss gathers its embeddings across the data-parallel ranks and ITM draws its hard
negatives from the gathered batch, so the dp=2 losses are those of one process on the whole batch.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from torch.distributed.tensor.parallel import RowwiseParallel

from hybridformer.commands.train import model_family
from hybridformer.config import load_config
from hybridformer.distributed.parallelize_multimodal import decoder_block_tp_plan
from hybridformer.models.multimodal import MultimodalModel
from hybridformer.recipes.multimodal_common import load_model
from hybridformer.registry import save_model
from hybridformer.recipes.train_parallel_multimodal import MMTrainParallelConfig, train_parallel_multimodal

sys.path.insert(0, str(Path(__file__).parent))
from multimodal_worker import FROZEN  # noqa: E402
from test_parallel import free_port, torchrun  # noqa: E402

WORKER = Path(__file__).parent / "multimodal_worker.py"
LOSS_RTOL = 1e-5


def _launch(tmp_path: Path, nproc: int, cases: list[str]) -> dict:
    proc, _ = torchrun(nproc, [str(WORKER), str(tmp_path), *cases])
    results = tmp_path / f"multimodal_results_{nproc}.json"
    if not results.is_file():
        pytest.fail(f"torchrun x{nproc} wrote no results (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(results.read_text())


def _assert_matches(result: dict) -> None:
    assert result["losses"] == pytest.approx(result["reference"], rel=LOSS_RTOL)
    assert result["reference_moved"] > 1e-2, "the reference did not train: the comparison would be empty"
    assert result["param_excess"] <= 1.0, f"weights after 3 steps: {result['worst']}"
    assert result["param_rel_diff"] < 5e-5


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> dict:
    return _launch(tmp_path_factory.mktemp("mm2"), 2, ["dp2:2:1", "tp2:1:2"])


@pytest.mark.parametrize("name", ["dp2", "tp2"])
def test_multimodal_matches_single_process(two_ranks, name):
    _assert_matches(two_ranks[name])


@pytest.mark.slow
def test_multimodal_hsdp2_matches_single_process(tmp_path):
    _assert_matches(_launch(tmp_path, 2, ["hsdp2:1:1:2"])["hsdp2"])


@pytest.mark.slow
def test_multimodal_dp2_tp2_matches_single_process(tmp_path):
    _assert_matches(_launch(tmp_path, 4, ["dp2_tp2:2:2"])["dp2_tp2"])


@pytest.mark.slow
def test_negative_controls_differ(tmp_path):
    """Gathering ITC / ITM over every rank under TP (each row counted twice), or per-rank BatchNorm
    statistics under dp, moves the loss away from one process's: the group and the sync matter."""
    results = _launch(tmp_path, 2, ["tp2_world_group:1:2", "dp2_local_bn:2:1"])
    for name in ("tp2_world_group", "dp2_local_bn"):
        got, want = results[name]["losses"], results[name]["reference"]
        assert got != pytest.approx(want, rel=1e-3), name


CLI = ["--model", "tiny", "--objectives", "itc,itm,caption", "--data.train_fraction", "0.01",
       "--train.max_steps", "2", "--train.batch_size", "4", "--train.progress_bar", "false",
       "--train.tensorboard", "false"]


@pytest.mark.slow
def test_train_command_tensor_parallel_equals_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``hybridformer train --model tiny`` with tp=2 (dropout and selection noise on: every TP rank
    draws the full-shape samples one process draws) against the same recipe in this process."""
    proc, _ = torchrun(2, ["-m", "hybridformer", "train", *CLI, "--parallel.tp", "2", "--out-dir", str(tmp_path / "tp2")])
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "model saved to" in proc.stdout
    record = json.loads((tmp_path / "tp2" / "metrics.json").read_text())
    assert record["world_size"] == 2 and record["parallel"]["tp"] == 2
    assert not (tmp_path / "tp2" / "checkpoints").exists()  # train.keep_checkpoints is false

    for key, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(free_port())}.items():
        monkeypatch.setenv(key, value)
    single = train_parallel_multimodal(load_config(MMTrainParallelConfig, None, [*CLI, "--train.out_dir", str(tmp_path / "one")]))
    assert record["losses"] == pytest.approx(single["losses"], rel=LOSS_RTOL)
    got = dict(MultimodalModel.from_pretrained(record["model_dir"]).named_parameters())
    for name, want in MultimodalModel.from_pretrained(single["model_dir"]).named_parameters():
        assert got[name].shape == want.shape, name  # the gates are scalars again
        if name.endswith(FROZEN):  # zero gradient in exact arithmetic: AdamW steps by rounding noise
            continue
        diff = (got[name] - want).norm()
        assert diff <= 5e-5 * want.norm() or diff <= 1e-5 * want.numel() ** 0.5, name


def test_decoder_plan_names_every_projection_of_the_block():
    """Each key is a module path inside the block; every Linear of the attentions and the FFN is split."""
    block = load_model("tiny").decoder.blocks[0]
    plan = decoder_block_tp_plan(block)
    linears = {n for n, m in block.named_modules() if isinstance(m, torch.nn.Linear) and "scorer" not in n}
    assert set(plan) == linears
    assert {n for n, style in plan.items() if isinstance(style, RowwiseParallel)} == {
        "self_attention.o_proj", "cross_attention.o_proj", "ffn.fc_out"}


def test_pipeline_parallelism_is_refused_for_the_multimodal_model():
    with pytest.raises(ValueError, match=r"parallel\.pp.*not supported for the multimodal model"):
        load_config(MMTrainParallelConfig, None, ["--model", "tiny", "--parallel.pp", "2"])


def test_model_family_from_the_model_value(tmp_path: Path):
    assert model_family(None) == "text" and model_family("tiny") == "multimodal"
    torch.manual_seed(0)
    save_model(load_model("tiny"), tmp_path / "mm")
    assert model_family(str(tmp_path / "mm")) == "multimodal"
    with pytest.raises(FileNotFoundError, match="not found"):
        model_family(str(tmp_path / "nothing"))
    with pytest.raises(ValueError, match="--model.init_from"):
        model_family("minilm")
