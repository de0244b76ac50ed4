"""One training engine for every stage (classifier + OAA, OAA+, AMR).

Determinism and resumption: the order of epoch ``e`` is a permutation drawn from
``(seed, e)``, and the view geometry of image ``i`` in epoch ``e`` from ``(seed, e, i)``; nothing
depends on the loader position or on a global RNG. A checkpoint (model, optimizer, schedule,
the stage's extra state such as the OAA store, position) is written atomically at the end of every
epoch and, optionally, every ``checkpoint_every`` steps; a killed run restarts from it, skips the
batches it had done, and ends with the same weights and maps as an uninterrupted run. The loop only
needs a list of indices per epoch, so a distributed sampler can shard it later.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..data.transforms import normalize_images, render_views, sample_geometry
from ..io import torch_save


class TrainingInterrupted(RuntimeError):
    """Raised by ``stop_after_steps`` (tests simulate a killed run with it)."""


class Stateful(Protocol):
    def state_dict(self) -> dict: ...
    def load_state_dict(self, sd: dict) -> None: ...


def resolve_device(device: str = "auto") -> torch.device:
    if device in ("auto", "", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here; use 'cpu' or 'auto'")
    return dev


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
    return {"images": [s["image"] for s in samples], "labels": torch.stack([s["label"] for s in samples]),
            "indices": torch.tensor([s["index"] for s in samples]), "ids": [s["id"] for s in samples]}


def make_views(images: list[torch.Tensor], geo: torch.Tensor, size: int, device: torch.device) -> torch.Tensor:
    """Render normalized views of uint8 images (batched when all share a size)."""
    if all(im.shape == images[0].shape for im in images):
        x = normalize_images(torch.stack(images).to(device, non_blocking=True))
        return render_views(x, geo.to(device), size)
    return torch.cat([render_views(normalize_images(im[None].to(device)), g[None].to(device), size)
                      for im, g in zip(images, geo)])


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


@dataclass
class Batch:
    views: torch.Tensor
    geo: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    ids: list[str]
    epoch: int
    last_epoch: bool


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from: int | None = None


def fit(model: torch.nn.Module, optimizer: torch.optim.Optimizer, schedule: str, dataset,
        cfg: LoopConfig, run_dir: Path, step_fn: Callable[[Batch], torch.Tensor],
        extra_state: dict[str, Stateful] | None = None, device: torch.device = torch.device("cpu"),
        progress: bool = True, desc: str = "train", stop_after_steps: int | None = None,
        on_epoch_end: Callable[[int], None] | None = None) -> FitResult:
    """Train ``model`` for ``cfg.epochs``; ``step_fn`` returns the loss of one batch.

    ``extra_state`` objects are checkpointed and restored with the model."""
    from tqdm.auto import tqdm

    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {sorted(SCHEDULES)}, got {schedule!r}")
    extra_state = extra_state or {}
    n = len(dataset)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    ckpt = Path(run_dir) / "checkpoint.pt"
    result = FitResult()
    epoch, skip, gstep = 0, 0, 0
    if ckpt.exists():
        sd = torch.load(ckpt, map_location=device, weights_only=False)
        model.load_state_dict(sd["model"])
        optimizer.load_state_dict(sd["optimizer"])
        for k, obj in extra_state.items():
            obj.load_state_dict(sd["extra"][k])
        epoch, skip, gstep = sd["epoch"], sd["step_in_epoch"], sd["global_step"]
        result.history = sd.get("history", [])
        result.seconds = sd.get("seconds", 0.0)
        result.resumed_from = gstep

    def save(ep: int, step_in_epoch: int) -> None:
        torch_save(ckpt, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                          "extra": {k: o.state_dict() for k, o in extra_state.items()},
                          "epoch": ep, "step_in_epoch": step_in_epoch, "global_step": gstep,
                          "history": result.history, "seconds": result.seconds + time.perf_counter() - t0})

    t0 = time.perf_counter()
    use_amp = cfg.amp and device.type == "cuda"
    model.train()
    while epoch < cfg.epochs:
        order = epoch_order(n, cfg.seed, epoch)
        loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=order[skip * cfg.batch_size:],
                            collate_fn=collate_samples, num_workers=cfg.num_workers)
        losses = []
        bar = tqdm(loader, desc=f"{desc} epoch {epoch + 1}/{cfg.epochs}", leave=False,
                   disable=not progress, initial=skip, total=steps_per_epoch)
        for k, raw in enumerate(bar, start=skip):
            for g, base in zip(optimizer.param_groups, base_lrs):
                g["lr"] = base * SCHEDULES[schedule](gstep, total)
            idx = raw["indices"].tolist()
            geo = view_geometries(idx, cfg.seed, epoch, cfg.augment, cfg.scale_range)
            views = make_views(raw["images"], geo, cfg.crop_size, device)
            batch = Batch(views, geo.to(device), raw["labels"].to(device), raw["indices"].to(device),
                          raw["ids"], epoch, epoch == cfg.epochs - 1)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                loss = step_fn(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            gstep += 1
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
            if stop_after_steps is not None and gstep >= stop_after_steps:
                raise TrainingInterrupted(f"stopped after {gstep} steps (as asked)")
            if cfg.checkpoint_every and gstep % cfg.checkpoint_every == 0 and k + 1 < steps_per_epoch:
                save(epoch, k + 1)
        bar.close()
        result.history.append({"epoch": epoch, "loss": float(np.mean(losses)) if losses else float("nan")})
        if on_epoch_end is not None:
            on_epoch_end(epoch)
        epoch, skip = epoch + 1, 0
        save(epoch, 0)
    result.seconds += time.perf_counter() - t0
    return result
