"""Data-parallel training with ``torch.distributed`` (launched by ``torchrun``), for the engine.

    torchrun --standalone --nproc_per_node 4 -m wsss_lib.experiments.launch classifier data_root=/data/VOC2012 backbone=vgg16

What the engine does with it (:func:`wsss_lib.engine.loop.fit`):

- *The same batches in any number of processes.* The global batch of step ``k`` is
  ``order[k*B:(k+1)*B]`` of the engine's ``(seed, epoch)`` order whatever the world size; rank
  ``r`` takes the ``r``-th of ``world`` contiguous chunks of it (:class:`DistributedEpochSampler`).
  Each rank's loss is scaled by ``world * n_r / B`` so that DistributedDataParallel's gradient
  average equals the gradient of the whole batch's mean loss. A checkpoint's position (epoch,
  step) therefore means the same thing with 1 or 8 ranks: a run resumes with another world size.
  torch's own ``DistributedSampler`` draws its own permutation and pads the last batch by repeating
  images, which would break both that and the OAA store's one visit per image per epoch.
- *SyncBatchNorm* (:func:`sync_batchnorm`): torch's on CUDA; on CPU (gloo), where torch's refuses
  CPU tensors, :class:`AllReduceBatchNorm2d` computes the same global-batch statistics with
  differentiable all-reduces, so a CPU run of 2 ranks trains the same network as 1 process.
- *Sharded state merged at save time* (:func:`merge_rows`): the OAA store, the drift and the
  snapshot recorders keep a full copy per rank, but each rank only writes the rows of the images it
  visits; before every checkpoint the rows each rank touched since the last merge are combined
  (every row is touched by exactly one rank per epoch, so the merge is exact: ``x + 0 = x``).
- *Rank 0 writes*: run folders, checkpoints, metrics, progress bars; the others train and return.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from datetime import timedelta
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.nn.functional import all_reduce
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import Sampler


def world() -> tuple[int, int]:
    """``(rank, world size)``; ``(0, 1)`` outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return world()[0] == 0


def barrier() -> None:
    if world()[1] > 1:
        dist.barrier()


@contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (makes folders, data, locks); the other ranks run it after."""
    rank, size = world()
    if size > 1 and rank != 0:
        dist.barrier()
    yield
    if size > 1 and rank == 0:
        dist.barrier()


def init_from_env(device: str = "auto") -> bool:
    """Join the process group ``torchrun`` describes in the environment (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``...): NCCL when the ranks use CUDA, gloo on CPU. Returns whether it did."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ or dist.is_initialized():
        return False

    cuda = not str(device).startswith("cpu") and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    # rank 0 scores and writes after training while the others wait: a long timeout
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(hours=2))
    return True


def local_device(device: torch.device) -> torch.device:
    """A rank's own GPU (``cuda:LOCAL_RANK``) inside a process group; ``device`` otherwise."""
    if device.type == "cuda" and world()[1] > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


# -- batches ----------------------------------------------------------------------------------------
def check_world_batches(n: int, batch_size: int, size: int) -> None:
    """Every rank needs at least one image of every global batch (the last one included)."""
    last = n % batch_size
    if size > 1 and (batch_size < size or 0 < last < size):
        raise ValueError(f"batch_size={batch_size} with {n} images leaves a rank of {size} without images in a "
                         f"batch (last batch: {last or batch_size}); expected a batch_size >= the number of "
                         f"processes whose last batch ({n} mod batch_size) is 0 or >= {size}")


def rank_chunk(global_batch: list[int], rank: int, size: int) -> list[int]:
    """Rank ``rank``'s contiguous share of a global batch (sizes differ by at most one)."""
    return [int(i) for i in np.array_split(np.asarray(global_batch, dtype=np.int64), size)[rank]]


class DistributedEpochSampler(Sampler):
    """Batches of indices for one rank: its chunk of each global batch of the engine's epoch order
    (``order``: the epoch's permutation), from global step ``start_step`` on."""

    def __init__(self, order: list[int], batch_size: int, rank: int = 0, size: int = 1, start_step: int = 0) -> None:
        self.order, self.batch_size, self.rank, self.size = list(order), batch_size, rank, size
        self.start_step = start_step

    def global_batch(self, k: int) -> list[int]:
        return self.order[k * self.batch_size:(k + 1) * self.batch_size]

    def __iter__(self):
        steps = -(-len(self.order) // self.batch_size)
        for k in range(self.start_step, steps):
            yield rank_chunk(self.global_batch(k), self.rank, self.size)

    def __len__(self) -> int:
        return max(0, -(-len(self.order) // self.batch_size) - self.start_step)


# -- sharded state ----------------------------------------------------------------------------------
_REDUCIBLE = (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int32, torch.int64, torch.uint8)


def merge_rows(tensors: dict[str, torch.Tensor], touched: torch.Tensor) -> dict[str, torch.Tensor]:
    """Combine the rows each rank wrote since the last merge into every rank's copy.

    ``touched``: bool over the leading dims of every tensor, True where this rank wrote. A row no
    rank touched keeps its value; a row touched by one rank takes that rank's value exactly. Raises
    if two ranks wrote the same row (the engine's batches never do that)."""
    rank, size = world()
    if size == 1:
        return tensors
    hits = touched.to(torch.int32)
    dist.all_reduce(hits)
    if int(hits.max()) > 1:
        raise RuntimeError("two ranks wrote the same row of sharded training state since the last merge")
    out = {}
    for name, t in tensors.items():
        shape = touched.shape + (1,) * (t.dim() - touched.dim())
        red = t.dtype if t.dtype in _REDUCIBLE else (torch.int32 if not t.is_floating_point() else torch.float32)
        part = torch.where(touched.view(shape), t, torch.zeros((), dtype=t.dtype, device=t.device)).to(red)
        dist.all_reduce(part)
        out[name] = torch.where((hits > 0).view(shape), part.to(t.dtype), t)
    return out


def merge_state(objects) -> None:
    """Call ``merge_shards()`` on every object that has one (collective: every rank calls it)."""
    for obj in objects:
        merge = getattr(obj, "merge_shards", None)
        if merge is not None:
            merge()


# -- models -----------------------------------------------------------------------------------------
class AllReduceBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the global batch of all ranks for CPU (gloo) process groups, where torch's
    ``SyncBatchNorm`` refuses CPU tensors: mean, then variance, each by one differentiable
    all-reduce (``torch.distributed.nn``), so gradients flow across ranks as with SyncBatchNorm."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or world()[1] == 1:
            return super().forward(x)

        dims = (0, 2, 3)
        n = torch.tensor([float(x.numel() // x.shape[1])], dtype=x.dtype)
        total = all_reduce(torch.cat([x.sum(dims), n]))
        count = total[-1]
        mean = total[:-1] / count
        var = all_reduce((x - mean.view(1, -1, 1, 1)).pow(2).sum(dims)) / count
        if self.track_running_stats:
            with torch.no_grad():
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked + 1)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * count / (count - 1).clamp_min(1), alpha=m)
                self.num_batches_tracked.add_(1)
        y = (x - mean.view(1, -1, 1, 1)) / torch.sqrt(var.view(1, -1, 1, 1) + self.eps)
        if self.affine:
            y = y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return y


def _trains_statistics(module: nn.Module) -> bool:
    """A batch norm that normalizes with batch statistics in training mode (not one whose statistics
    are frozen: ``frozen_statistics``, :class:`wsss_lib.models.backbones.FrozenBatchNorm2d`)."""
    return isinstance(module, nn.modules.batchnorm._BatchNorm) and not getattr(module, "frozen_statistics", False)


def _convert_cpu_bn(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, nn.BatchNorm2d) and _trains_statistics(module) and not isinstance(module, AllReduceBatchNorm2d):
        out = AllReduceBatchNorm2d(module.num_features, module.eps, module.momentum, module.affine,
                                   module.track_running_stats)
        if module.affine:  # the same Parameter objects: the optimizer's groups stay valid
            out.weight, out.bias = module.weight, module.bias
        if module.track_running_stats:
            out.running_mean, out.running_var = module.running_mean, module.running_var
            out.num_batches_tracked = module.num_batches_tracked
        out.training = module.training
    for name, child in module.named_children():
        out.add_module(name, _convert_cpu_bn(child))
    return out


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Batch norm over all ranks: torch's ``SyncBatchNorm`` on CUDA, :class:`AllReduceBatchNorm2d`
    on CPU; parameters and buffers are kept (state dict keys unchanged)."""
    if device.type == "cuda":
        if _trains_statistics(model):
            return nn.SyncBatchNorm.convert_sync_batchnorm(model)
        for name, child in model.named_children():  # frozen batch norms stay frozen
            model.add_module(name, sync_batchnorm(child, device))
        return model
    return _convert_cpu_bn(model)


def wrap_model(model: nn.Module, device: torch.device) -> nn.Module:
    """The module a training step calls: ``model`` itself in one process; in a process group, the
    model with synchronized batch norm inside DistributedDataParallel (which broadcasts rank 0's
    weights at construction and averages gradients in backward)."""
    if world()[1] == 1:
        return model

    if any(_trains_statistics(m) for m in model.modules()):
        converted = sync_batchnorm(model, device)
        if converted is not model:
            raise RuntimeError("the model's root module is a batch norm; wrap it in a module first")
    return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)


def all_mean(total: float, count: int) -> float:
    """The mean over all ranks of values whose sum and count each rank holds."""
    if world()[1] == 1:
        return total / max(count, 1)
    dev = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor([total, float(count)], dtype=torch.float64, device=dev)
    dist.all_reduce(t)
    return float(t[0] / t[1].clamp_min(1))


__all__ = ["AllReduceBatchNorm2d", "DistributedEpochSampler", "all_mean", "barrier", "check_world_batches",
           "init_from_env", "is_main", "local_device", "main_first", "merge_rows", "merge_state", "rank_chunk",
           "sync_batchnorm", "world", "wrap_model"]
