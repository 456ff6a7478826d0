"""The text `hybridformer plan` prints: memory per rank, communication, step time, with the arithmetic."""

from __future__ import annotations

from hybridformer.distributed.plan import (
    GB,
    NAIVE,
    RECOMMENDED,
    PlanConfig,
    activation_values_per_token,
    comm,
    memory,
    step_time,
)

__all__ = ["format_plan"]


def _gb(x: float) -> str:
    return f"{x / GB:,.2f} GB"


def format_plan(cfg: PlanConfig) -> str:
    """A report of ``cfg``: the model, memory per rank, bytes per step per dimension, and the
    estimated step time with the recommended placement against the naive one."""
    m, par, hw = cfg.shape, cfg.parallel, cfg.hardware
    mem, volume = memory(cfg), comm(cfg)
    lines = [
        f"model {cfg.model}: {m.params / 1e9:.2f}B parameters (d={m.d_model}, L={m.n_layers}, h={m.n_heads}, "
        f"f={m.d_ff}, V={m.vocab_size}); N={cfg.seq_len}, {cfg.global_batch} sequences per step",
        f"mesh: dp_replicate={par.dp_replicate} x dp_shard={par.dp_shard} x tp={par.tp} x pp={par.pp} = "
        f"{par.world_size} GPUs; {cfg.microbatches} microbatches of {cfg.microbatch_tokens:,} tokens per DP rank; "
        f"{cfg.precision}; activation checkpointing {'on' if cfg.activation_checkpointing else 'off'}",
        "",
        "memory per rank (first pipeline stage):",
        f"  parameters   {_gb(mem.params):>12}   4 B x params on the stage / tp (matrices) / dp_shard",
        f"  gradients    {_gb(mem.grads):>12}   4 B, sharded like the parameters",
        f"  AdamW state  {_gb(mem.optimizer):>12}   8 B (two fp32 moments)",
        f"  FSDP buffers {_gb(mem.fsdp_buffers):>12}   bf16 unsharded params + grads of ~2 blocks in flight",
        f"  activations  {_gb(mem.activations):>12}   "
        + (
            "d values per token per block kept + one block recomputed"
            if cfg.activation_checkpointing
            else f"{activation_values_per_token(m, par.tp):,.0f} values per token per block"
        ),
        f"  total        {_gb(mem.total):>12}   of {hw.memory_gb:.0f} GB"
        + ("" if mem.total <= hw.memory_gb * GB else "  DOES NOT FIT"),
    ]
    other = PlanConfig(**{**vars(cfg), "activation_checkpointing": not cfg.activation_checkpointing})
    lines.append(
        f"  (activation checkpointing {'off' if cfg.activation_checkpointing else 'on'}: activations "
        f"{_gb(memory(other).activations)}, total {_gb(memory(other).total)})"
    )
    lines += ["", "communication sent per rank per step:"]
    for dim, volume_bytes in volume.items():
        lines.append(f"  {dim:<12} {_gb(volume_bytes):>12}")
    lines += [
        "",
        f"step time (peak {hw.peak_tflops:.0f} TFLOP/s x MFU {hw.mfu:.0%}; NVLink {hw.intra_node_gbs:.0f} GB/s and "
        f"network {hw.inter_node_gbs:.0f} GB/s per GPU per direction; {hw.gpus_per_node} GPUs per node):",
    ]
    times = {}
    for name, order in (("recommended", RECOMMENDED), ("naive", NAIVE)):
        t = step_time(cfg, order)
        times[name] = t.total
        placed = ", ".join(f"{d} on {link}" for d, link in t.links.items() if getattr(par, d) > 1)
        lines.append(
            f"  {name:<11} {t.total:8.2f} s = compute {t.compute:.2f} + bubble {t.bubble:.2f} + tp {t.tp:.2f} + "
            f"pp {t.pp:.2f} + exposed dp {t.dp:.2f}   ({placed or 'one GPU'})"
        )
    if times["naive"] > times["recommended"]:
        gain = times["naive"] / times["recommended"] - 1
        lines.append(f"  the recommended placement is {gain:.0%} faster (naive / recommended - 1)")
    return "\n".join(lines)
