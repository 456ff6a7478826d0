"""`hybridformer train` as two "nodes" on localhost (two torchrun agents meeting through c10d
rendezvous, one process each, tp=2), against `finetune` in this process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hybridformer.config import load_config
from hybridformer.encoders.text import TextEncoder
from hybridformer.encoders.text_config import TextEncoderConfig
from hybridformer.data.tokenizer import resolve_tokenizer
from hybridformer.models import TextClassifier
from hybridformer.recipes.train_parallel import TrainParallelConfig, train_parallel
from hybridformer.registry import save_model

from test_parallel import LAUNCH_TIMEOUT_S, SRC, free_port

TINY = [
    "--data.task", "sentiment", "--data.train_subset", "32", "--data.eval_subset", "32", "--data.max_length", "32",
    "--train.max_steps", "2", "--train.batch_size", "8", "--train.tensorboard", "false",
    "--train.progress_bar", "false", "--train.clip_norm", "null",
    # hybrid attention has no attention-probability dropout, which would fall on other heads under TP
    "--model.attention.kind", "hybrid", "--model.attention.window", "16", "--model.attention.global_k", "4",
]


def tiny_pretrained(folder: Path) -> Path:
    """A 2-block encoder with MiniLM's vocabulary and tokenizer, saved as a pretrained folder."""
    torch.manual_seed(0)
    config = TextEncoderConfig(vocab_size=30522, d_model=64, n_layers=2, n_heads=4, d_ff=128, max_positions=64)
    save_model(TextEncoder(config), folder)
    resolve_tokenizer(None).save_pretrained(str(folder))
    return folder


def test_two_node_tensor_parallel_train_equals_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    tiny = [*TINY, "--model.init_from", str(tiny_pretrained(tmp_path / "tiny"))]
    port = free_port()
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
        "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "two-nodes",
        "-m", "hybridformer", "train", *tiny, "--parallel.tp", "2", "--out-dir", str(tmp_path / "tp2"),
    ]
    nodes = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [node.communicate(timeout=LAUNCH_TIMEOUT_S)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    assert any("model saved to" in out for out in outputs)
    record = json.loads((tmp_path / "tp2" / "metrics.json").read_text())
    assert record["world_size"] == 2 and record["parallel"]["tp"] == 2

    # the same recipe in this process, world size 1
    for key, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(free_port())}.items():
        monkeypatch.setenv(key, value)
    single = train_parallel(load_config(TrainParallelConfig, None, [*tiny, "--train.out_dir", str(tmp_path / "one")]))
    assert record["losses"] == pytest.approx(single["losses"], rel=1e-5)
    exported = TextClassifier.from_pretrained(record["model_dir"])
    got = dict(exported.named_parameters())
    for name, want in TextClassifier.from_pretrained(single["model_dir"]).named_parameters():
        if name.endswith("k_proj.bias"):  # its gradient is 0 in exact arithmetic (see toy.build_model)
            continue
        # Relative 1e-5, or an RMS difference under 1e-6 = 1/50 of one AdamW step (lr 5e-5), so a
        # wrong update shows while elements with a ~0 gradient (e.g. the zero-started scorer),
        # on which AdamW steps by the sign of rounding noise, do not fail it.
        diff = (got[name] - want).norm()
        assert diff <= 1e-5 * want.norm() or diff <= 1e-6 * want.numel() ** 0.5, name
