"""ParallelDims validation and the plan calculator's arithmetic (no processes launched)."""

from __future__ import annotations

import pytest

from hybridformer.cli import main
from hybridformer.config import ConfigError
from hybridformer.distributed import ParallelDims
from hybridformer.distributed.plan import NAIVE, PRESETS, RECOMMENDED, PlanConfig, comm, links, memory, step_time


def test_degrees_must_multiply_to_the_world_size():
    ParallelDims(dp_shard=2, tp=2, pp=2).validate(8)
    with pytest.raises(ValueError, match=r"dp_replicate=1 x dp_shard=2 x tp=2 x pp=1 = 4 processes, but the world size is 8"):
        ParallelDims(dp_shard=2, tp=2).validate(8)
    with pytest.raises(ConfigError, match="parallel.tp: must be an integer >= 1, got 0"):
        ParallelDims(tp=0)


def test_tp_inside_a_node_and_the_naive_numbering_across_nodes():
    par = ParallelDims(dp_shard=2, tp=8, pp=4)
    assert links(par, RECOMMENDED, 8) == {"tp": "nvlink", "dp_shard": "network", "dp_replicate": "nvlink", "pp": "network"}
    assert links(par, NAIVE, 8)["tp"] == "network"
    assert links(ParallelDims(dp_shard=2, tp=4), RECOMMENDED, 8) == {
        "tp": "nvlink", "dp_shard": "nvlink", "dp_replicate": "nvlink", "pp": "nvlink"
    }


def test_memory_by_hand_for_7b_fsdp():
    cfg = PlanConfig(model="7b", seq_len=2048, global_batch=8, microbatches=1, parallel=ParallelDims(dp_shard=8))
    m = PRESETS["7b"]
    params = 32 * (4 * 4096**2 + 4 * 4096 + 2 * 4096 * 16384 + 16384 + 4096 + 4 * 4096) + 32000 * 4096
    assert m.params == params == 6_575_226_880
    est = memory(cfg)
    assert est.params == 4 * params / 8 and est.optimizer == 8 * params / 8
    # one sequence of 2048 tokens per rank, 8d + 2f values per token and block, bf16
    assert est.activations == 32 * (8 * 4096 + 2 * 16384) * 2048 * 2
    # FSDP: bf16 all-gather twice (forward, backward) and fp32 reduce-scatter, 7/8 of the model each
    assert comm(cfg)["dp_shard"] == pytest.approx((2 * 2 + 4) * params * 7 / 8)


def test_70b_recommended_placement_beats_naive_by_a_quarter():
    cfg = PlanConfig(
        model="70b", seq_len=4096, global_batch=512, microbatches=64,
        parallel=ParallelDims(dp_shard=2, tp=8, pp=4), activation_checkpointing=True,
    )
    assert memory(cfg).total < 80e9
    good, naive = step_time(cfg, RECOMMENDED), step_time(cfg, NAIVE)
    assert naive.total / good.total - 1 >= 0.25
    assert good.tp < naive.tp and good.compute == naive.compute


def test_plan_command(capsys):
    assert main(["plan", "--model", "70b", "--parallel.tp", "8", "--parallel.pp", "4", "--parallel.dp_shard", "2",
                 "--global_batch", "512", "--microbatches", "64", "--activation_checkpointing", "true"]) == 0
    out = capsys.readouterr().out
    assert "71.14B parameters" in out and "recommended" in out and "naive" in out
    assert main(["plan", "--parallel.tp", "3"]) == 2
    assert "parallel.tp: must divide n_heads=32" in capsys.readouterr().err
