"""Multi-process quantization-aware training of the digits CNN with torchquant and DDP.

    torchrun --nproc_per_node 2 examples/ddp_qat.py [--epochs 4] [--checkpoint qat.pt]
    python examples/ddp_qat.py      (one process, the single-process baseline)

gloo on CPU, NCCL when CUDA is available (one GPU per rank, ``LOCAL_RANK``). Every rank:

1. prepares the same `DigitsCNN` for QAT with the automatic path
   (``quantize(model, PrepareConfig(qat=True), example_inputs)``);
2. calibrates on its shard of the training set, then merges the calibrators across ranks
   (`torchquant.distributed.sync_calibrators`) so that all ranks start QAT from the same,
   bit-identical scales;
3. trains under ``DistributedDataParallel`` on its shard (global batch = ``batch_size``),
   keeping the quantizers identical after every step (`sync_quantizer_buffers`);
4. prints its test accuracy and checks that every quantizer's scale and zero point are equal
   on all ranks; rank 0 saves the checkpoint (it loads into a single-process model).

Sources: PyTorch DDP tutorial and ``torch.distributed`` docs (https://pytorch.org/docs/
stable/distributed.html); the model and data are `examples/digits_cnn.py`.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from digits_cnn import DigitsCNN, evaluate, load_data

from torchquant._api import quantize
from torchquant._auto import PrepareConfig
from torchquant.distributed import (
    is_distributed,
    sync_calibrators,
    sync_quantizer_buffers,
)
from torchquant.quant.quantizer import (
    enable_fake_quant,
    enable_observer,
    iter_quantizers,
    set_calibration_mode,
)


def prepare(width: int, example: Tensor, seed: int = 0) -> nn.Module:
    """The digits CNN (same initial weights for a given seed) prepared for QAT."""
    torch.manual_seed(seed)
    model = DigitsCNN(width).to(example.device)
    return quantize(model, PrepareConfig(qat=True), (example,))


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the world size (0, 1 without a process group)."""
    if is_distributed():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard(n: int, seed: int) -> Tensor:
    """This rank's indices of a permutation of ``range(n)`` (the same permutation on every
    rank), cut to equal sizes so every rank runs the same number of steps."""
    rank, world = rank_and_world()
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[rank::world][: n // world]


def calibrate_distributed(model: nn.Module, x: Tensor, batch_size: int) -> None:
    """Observe this rank's shard, merge the calibrators across ranks, set the qparams, and
    return the model to QAT mode (observe and fake-quantize)."""
    set_calibration_mode(model)
    model.eval()
    idx = shard(x.shape[0], seed=12345)
    with torch.no_grad():
        for start in range(0, idx.numel(), batch_size):
            model(x[idx[start : start + batch_size]])
    sync_calibrators(model)
    for _, q in iter_quantizers(model):
        q.compute_qparams()
    enable_observer(model, True)
    enable_fake_quant(model, True)


def train_qat(
    model: nn.Module, x: Tensor, y: Tensor, *, epochs: int, lr: float, batch_size: int
) -> None:
    """Adam with cosine decay on this rank's shard; ``batch_size`` is the global batch."""
    _, world = rank_and_world()
    net: nn.Module = model
    if is_distributed():
        device_ids = [x.device.index] if x.is_cuda else None
        net = DistributedDataParallel(model, device_ids=device_ids)
    local_batch = batch_size // world
    per_rank = x.shape[0] // world
    steps = epochs * math.ceil(per_rank / local_batch)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    net.train()
    for epoch in range(epochs):
        idx = shard(x.shape[0], seed=epoch).to(x.device)
        for start in range(0, idx.numel(), local_batch):
            batch = idx[start : start + local_batch]
            loss = F.cross_entropy(net(x[batch]), y[batch])
            opt.zero_grad(set_to_none=True)
            loss.backward()  # DDP averages the gradients across ranks
            opt.step()
            sched.step()
            sync_quantizer_buffers(model)
    if is_distributed():
        # BatchNorm statistics are ordinary buffers: take rank 0's, as DDP does at the start
        # of every forward (broadcast_buffers), so every rank evaluates the same model.
        for buffer in model.buffers():
            dist.broadcast(buffer, 0)


def qparams(model: nn.Module) -> dict[str, Tensor]:
    """Every quantizer's scale and zero point, on the CPU, by name."""
    out = {}
    for name, q in iter_quantizers(model):
        out[f"{name}.scale"] = q.scale.detach().cpu().clone()
        out[f"{name}.zero_point"] = q.zero_point.cpu().clone()
    return out


def identical_on_all_ranks(values: dict[str, Tensor]) -> bool:
    """True when ``values`` are bit-identical on every rank (True without a process group)."""
    if not is_distributed():
        return True
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, values)
    return all(
        g.keys() == values.keys() and all(torch.equal(g[k], values[k]) for k in values)
        for g in gathered
    )


def run(
    *,
    epochs: int = 4,
    width: int = 16,
    lr: float = 3e-3,
    batch_size: int = 64,
    device: torch.device | None = None,
    checkpoint: str | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Prepare, calibrate and train on this rank: the trained model, and its test accuracy
    (percent), its qparams and whether they are identical on all ranks."""
    device = device or torch.device("cpu")
    x_train, y_train, x_test, y_test = load_data(device)
    model = prepare(width, x_train[:2])
    calibrate_distributed(model, x_train, batch_size)
    calibrated = qparams(model)
    same_after_calibration = identical_on_all_ranks(calibrated)
    train_qat(model, x_train, y_train, epochs=epochs, lr=lr, batch_size=batch_size)
    trained = qparams(model)
    result = {
        "accuracy": evaluate(model, x_test, y_test),
        "same_after_calibration": same_after_calibration,
        "same_after_training": identical_on_all_ranks(trained),
        "qparams": trained,
    }
    if checkpoint is not None and rank_and_world()[0] == 0:
        torch.save(model.state_dict(), checkpoint)
    return model, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--checkpoint", default=None, help="rank 0 saves the model here")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    device = torch.device("cpu")
    if cuda:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)  # all_gather_object on NCCL needs it
    backend = "nccl" if cuda else "gloo"
    launched = "RANK" in os.environ  # set by torchrun; without it, one process
    if launched:
        dist.init_process_group(backend)
    try:
        rank, world = rank_and_world()
        _, result = run(
            epochs=args.epochs, width=args.width, device=device, checkpoint=args.checkpoint
        )
        for r in range(world):  # print in rank order
            if r == rank:
                print(
                    f"rank {rank}/{world} ({backend if launched else 'no process group'}, "
                    f"{device}): test accuracy {result['accuracy']:.2f}%, "
                    f"{len(result['qparams']) // 2} quantizers",
                    flush=True,
                )
            if launched:
                dist.barrier()
        if rank == 0:
            print(
                f"scales and zero points identical on all ranks: after calibration "
                f"{result['same_after_calibration']}, after QAT {result['same_after_training']}",
                flush=True,
            )
            if args.checkpoint:
                print(f"checkpoint saved to {args.checkpoint}", flush=True)
    finally:
        if launched:
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
