"""One training engine for every stage (classifier + OAA, OAA+, AMR).

Determinism and resumption: the order of epoch ``e`` is a permutation drawn from
``(seed, e)``, and the view geometry of image ``i`` in epoch ``e`` from ``(seed, e, i)``; nothing
depends on the loader position or on a global RNG. A checkpoint (model, optimizer, schedule,
the stage's extra state such as the OAA store, position) is written atomically at the end of every
epoch and, optionally, every ``checkpoint_every`` steps; a killed run restarts from it, skips the
batches it had done, and ends with the same weights and maps as an uninterrupted run. Under
``torchrun`` each rank takes its chunk of every global batch (:mod:`wsss_lib.util.distributed`),
so a checkpoint's position means the same with any number of processes.
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from wsss_lib.data.transforms import canvas_mask, normalize_images, pad_to_canvas, render_views, sample_geometry
from wsss_lib.util import distributed as D
from wsss_lib.util.distributed import local_device
from wsss_lib.util.environment import env_flag
from wsss_lib.util.io import torch_load, torch_save
from wsss_lib.util.sync_guard import no_host_sync


class TrainingInterrupted(RuntimeError):
    """Raised by ``stop_after_steps`` (tests simulate a killed run with it)."""


class Stateful(Protocol):
    def state_dict(self) -> dict: ...
    def load_state_dict(self, sd: dict) -> None: ...


def resolve_device(device: str = "auto") -> torch.device:
    """The training device (in a ``torchrun`` process group on GPUs: this rank's own GPU)."""

    if device in ("auto", "", None):
        return local_device(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here; use 'cpu' or 'auto'")
    return local_device(dev)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


def view_geometries(indices: list[int], seed: int, epoch: int, augment: str,
                    scale_range: tuple[float, float]) -> torch.Tensor:
    rows = [sample_geometry(np.random.default_rng([seed, epoch, i]), augment, scale_range).as_tensor()
            for i in indices]
    return torch.stack(rows)


def collate_samples(samples: list[dict]) -> dict:
    """A batch: images stacked when they share a size, else on one zero canvas with their ``sizes``
    (:func:`~wsss_lib.data.transforms.pad_to_canvas`), so the loader pins one tensor either way."""
    images, sizes = stack_images([s["image"] for s in samples])
    return {"images": images, "sizes": sizes, "labels": torch.stack([s["label"] for s in samples]),
            "indices": torch.tensor([s["index"] for s in samples]), "ids": [s["id"] for s in samples]}


def stack_images(images: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """uint8 images -> ``(B x 3 x H x W, None)`` when they share a size, else ``(canvas, sizes)``."""
    if all(im.shape == images[0].shape for im in images):
        return torch.stack(images), None
    return pad_to_canvas(images)


def make_views(images, geo: torch.Tensor, size: int, device: torch.device,
               sizes: torch.Tensor | None = None) -> torch.Tensor:
    """Render normalized views of uint8 images: a stacked ``B x 3 x H x W`` tensor (with ``sizes``: a
    :func:`~wsss_lib.data.transforms.pad_to_canvas` canvas of variable-size images), or a list of
    images. One copy to the device for the whole batch, without waiting (pinned batches); the canvas's
    padding is zeroed after normalization, so every view equals the one rendered from its own image."""
    if not isinstance(images, torch.Tensor):
        images, sizes = stack_images(list(images))
    x = normalize_images(images.to(device, non_blocking=True))
    if sizes is not None:
        sizes = sizes.to(device, non_blocking=True)  # once: the mask and the affines read it on the device
        x = x * canvas_mask(sizes, tuple(x.shape[-2:]), device)
    return render_views(x, geo.to(device, non_blocking=True), size, sizes=sizes)


def loader_workers(device: torch.device, num_workers: int = 0) -> int:
    """Loader worker processes: ``num_workers`` when given; else on CUDA this rank's share of the cores
    (up to 8, one left for the main process), on CPU none (the cores compute the steps)."""
    if num_workers:
        return num_workers
    return min(8, max(1, (os.cpu_count() or 2) // D.world()[1] - 1)) if device.type == "cuda" else 0


def poly_lr(step: int, total: int, power: float = 0.9) -> float:
    return (1 - min(step, total) / max(total, 1)) ** power


def step_lr(step: int, total: int, at: float = 2 / 3) -> float:
    """The OAA paper's schedule: x0.1 after 2/3 of the iterations (2e4 of 3e4)."""
    return 0.1 if step >= at * total else 1.0


SCHEDULES = {"poly": poly_lr, "step": step_lr}


@dataclass
class LoopConfig:
    epochs: int
    batch_size: int
    seed: int
    crop_size: int
    augment: str = "flip"
    scale_range: tuple[float, float] = (0.7, 1.0)
    num_workers: int = 0
    checkpoint_every: int = 0
    amp: bool = False
    #: read the loss on the host (a GPU sync) only every N steps, for the progress bar
    log_every: int = 10
    #: refuse host synchronisation inside the steps that do not log (also: ``WSSS_SYNC_CHECK=1``)
    sync_check: bool = False


@dataclass
class Batch:
    """One rank's share of a global batch, on the training device."""

    views: torch.Tensor
    geo: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    ids: list[str]
    epoch: int
    last_epoch: bool
    #: the module to call for the forward pass (the model, or it inside DistributedDataParallel)
    model: torch.nn.Module | None = None
    #: the dataset indices as a Python list (to read host-side data without touching the device)
    host_indices: list[int] = field(default_factory=list)


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from: int | None = None


def amp_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """bf16 autocast on CUDA; fp16 (with a gradient scaler) on GPUs without bf16; None: fp32."""
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


class EpochBatches(torch.utils.data.Sampler):
    """The batch sampler of a loader that lives for the whole run: it yields the batches of
    ``current`` (the epoch's :class:`~wsss_lib.util.distributed.DistributedEpochSampler`), which the
    engine replaces every epoch, so the loader's workers persist (``persistent_workers``)."""

    def __init__(self) -> None:
        self.current: torch.utils.data.Sampler | None = None

    def __iter__(self):
        if self.current is None:
            raise RuntimeError("EpochBatches: no epoch set (the engine sets .current before iterating)")
        return iter(self.current)

    def __len__(self) -> int:
        return len(self.current) if self.current is not None else 0


def fit(model: torch.nn.Module, optimizer: torch.optim.Optimizer, schedule: str, dataset,
        cfg: LoopConfig, run_dir: Path, step_fn: Callable[[Batch], torch.Tensor],
        extra_state: dict[str, Stateful] | None = None, device: torch.device = torch.device("cpu"),
        progress: bool = True, desc: str = "train", stop_after_steps: int | None = None,
        on_epoch_end: Callable[[int], None] | None = None) -> FitResult:
    """Train ``model`` for ``cfg.epochs``; ``step_fn`` returns the loss of one batch (calling
    ``batch.model`` for the forward pass).

    ``extra_state`` objects are checkpointed and restored with the model; in a process group
    (``torchrun``, see :mod:`wsss_lib.util.distributed`) those with ``merge_shards()`` are merged
    across ranks before every checkpoint, and only rank 0 writes.

    The GPU fast path: bf16 autocast (fp16 + gradient scaler where bf16 is missing), channels_last,
    pinned batches copied without waiting, and no host synchronisation in a step except every
    ``cfg.log_every`` steps, when the progress bar reads the loss."""

    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {sorted(SCHEDULES)}, got {schedule!r}")
    extra_state = extra_state or {}
    rank, size = D.world()
    n = len(dataset)
    D.check_world_batches(n, cfg.batch_size, size)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    ckpt = Path(run_dir) / "checkpoint.pt"
    result = FitResult()
    epoch, skip, gstep = 0, 0, 0
    if ckpt.exists():
        sd = torch_load(ckpt, map_location=device)
        model.load_state_dict(sd["model"])
        optimizer.load_state_dict(sd["optimizer"])
        for k, obj in extra_state.items():
            obj.load_state_dict(sd["extra"][k])
        epoch, skip, gstep = sd["epoch"], sd["step_in_epoch"], sd["global_step"]
        result.history = sd.get("history", [])
        result.seconds = sd.get("seconds", 0.0)
        result.resumed_from = gstep
        if progress and D.world()[0] == 0:
            where = (f"epoch {epoch + 1}, step {skip + 1} of {steps_per_epoch}" if epoch < cfg.epochs
                     else "its end (every epoch done)")
            print(f"[{desc}] resuming from {where} ({ckpt}, written after step {gstep} of {total})",
                  file=sys.stderr, flush=True)

    cuda = device.type == "cuda"
    if cuda:
        model.to(memory_format=torch.channels_last)
    net = D.wrap_model(model, device)
    dtype = amp_dtype(device, cfg.amp)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    sync_check = cfg.sync_check or env_flag("WSSS_SYNC_CHECK")
    log_every = max(1, cfg.log_every)
    # workers change no result (every view's geometry comes from (seed, epoch, index))
    workers = loader_workers(device, cfg.num_workers)

    def save(ep: int, step_in_epoch: int) -> None:
        D.merge_state(extra_state.values())
        for o in extra_state.values():  # state that writes finished epochs once, outside the checkpoint
            if hasattr(o, "epochs_finished"):
                o.epochs_finished(ep)
        if rank == 0:
            torch_save(ckpt, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                              "extra": {k: o.state_dict() for k, o in extra_state.items()},
                              "epoch": ep, "step_in_epoch": step_in_epoch, "global_step": gstep, "world_size": size,
                              "history": result.history, "seconds": result.seconds + time.perf_counter() - t0})

    t0 = time.perf_counter()
    model.train()
    # one loader for the whole run: its workers persist across epochs (no start-up per epoch); each
    # epoch points its batch sampler at that epoch's order
    batches = EpochBatches()
    loader = DataLoader(dataset, batch_sampler=batches, collate_fn=collate_samples, num_workers=workers,
                        pin_memory=cuda, persistent_workers=workers > 0)
    while epoch < cfg.epochs:
        order = epoch_order(n, cfg.seed, epoch)
        sampler = batches.current = D.DistributedEpochSampler(order, cfg.batch_size, rank, size, start_step=skip)
        loss_sum = torch.zeros((), device=device)
        window, window_n, n_steps = torch.zeros((), device=device), 0, 0
        bar = tqdm(loader, desc=f"{desc} epoch {epoch + 1}/{cfg.epochs}", leave=False,
                   disable=not progress or rank != 0, initial=skip, total=steps_per_epoch)
        for k, raw in enumerate(bar, start=skip):
            for g, base in zip(optimizer.param_groups, base_lrs):
                g["lr"] = base * SCHEDULES[schedule](gstep, total)
            idx = raw["indices"].tolist()
            geo = view_geometries(idx, cfg.seed, epoch, cfg.augment, cfg.scale_range)
            if cuda:
                geo = geo.pin_memory()
            share = size * len(idx) / len(sampler.global_batch(k))  # DDP averages: the batch's mean loss
            logging = (gstep + 1) % log_every == 0
            with no_host_sync(device, sync_check and not logging):
                views = make_views(raw["images"], geo, cfg.crop_size, device, sizes=raw["sizes"])
                if cuda:
                    views = views.contiguous(memory_format=torch.channels_last)
                batch = Batch(views, geo.to(device, non_blocking=True), raw["labels"].to(device, non_blocking=True),
                              raw["indices"].to(device, non_blocking=True), raw["ids"], epoch,
                              epoch == cfg.epochs - 1, net, idx)
                with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                    loss = step_fn(batch)
                optimizer.zero_grad(set_to_none=True)
                scaled = loss * share if size > 1 else loss
                if scaler is not None:  # fp16: the scaler's inf check reads one value per step
                    scaler.scale(scaled).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    scaled.backward()
                    optimizer.step()
                loss_d = loss.detach().float()
                loss_sum += loss_d
                window += loss_d
            gstep += 1
            window_n += 1
            n_steps += 1
            if logging:
                bar.set_postfix(loss=f"{float(window) / window_n:.4f}")
                window, window_n = torch.zeros((), device=device), 0
            if stop_after_steps is not None and gstep >= stop_after_steps:
                raise TrainingInterrupted(f"stopped after {gstep} steps (as asked)")
            if cfg.checkpoint_every and gstep % cfg.checkpoint_every == 0 and k + 1 < steps_per_epoch:
                save(epoch, k + 1)
        bar.close()
        mean_loss = D.all_mean(float(loss_sum), n_steps) if n_steps else float("nan")
        result.history.append({"epoch": epoch, "loss": mean_loss})
        if on_epoch_end is not None:
            on_epoch_end(epoch)
        epoch, skip = epoch + 1, 0
        save(epoch, 0)
    result.seconds += time.perf_counter() - t0
    return result
