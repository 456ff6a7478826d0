"""Worker for test_contrastive's torchrun check: each of the processes takes its shard of a fixed batch,
computes the ITC loss with gathered embeddings, backpropagates through a shared projection and the
temperature, averages the gradients (what DDP does) and rank 0 writes the JSON the test reads."""

import json
import sys

import torch
import torch.distributed as dist

from hybridformer.losses import ContrastiveObjective, contrastive_loss


def main(out_path: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    images, texts = torch.randn(8, 6, dtype=torch.float64), torch.randn(8, 6, dtype=torch.float64)
    proj = torch.nn.Linear(6, 4, bias=False).double()
    objective = ContrastiveObjective().double()
    shard = slice(rank * 8 // world, (rank + 1) * 8 // world)
    embed = lambda x: torch.nn.functional.normalize(proj(x), dim=-1)  # noqa: E731
    out = contrastive_loss(embed(images[shard]), embed(texts[shard]), objective.temperature())
    out.loss.backward()
    grads = [proj.weight.grad, objective.log_temperature.grad.reshape(1)]
    loss = out.loss.detach().clone()
    for t in [loss, *grads]:
        dist.all_reduce(t)
        t /= world
    if rank == 0:
        with open(out_path, "w") as f:
            json.dump({"world": world, "loss": loss.item(), "proj_grad": grads[0].tolist(),
                       "temperature_grad": grads[1].item()}, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
