"""Stage 1: train the CAM classifier with Online Attention Accumulation (OAA).

One run yields three attention sources for every training image: ``cam`` (the final model's
attention), ``oaa_max`` (eq. 5) and ``oaa_ave`` (eq. 10), plus per-epoch snapshots of a fixed
subset of images, the checkpoint and ``metrics.json``. See :func:`run_classifier_stage`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import ClassVar
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as Fn

from ..accumulation import GATES, OAAStore
from ..attention import attention_maps, class_scores
from ..data.transforms import views_to_image_frame
from ..data.voc import VOCLayout, VOCSegDataset
from ..evaluation import mean_average_precision
from ..io import file_digest, torch_save
from ..models.cam import build_cam_net
from ..runs import data_identity, is_finished, prepare_run, stage_entry, write_metrics
from .common import dense_source, flat_metrics, infer_attention, save_and_score, training_set
from .config import TrainConfig
from .engine import Batch, LoopConfig, fit, resolve_device, seed_everything
from .data_setup import resolve_data_root


@dataclass
class ClassifierConfig(TrainConfig):
    """Hyper-parameters of the classifier + OAA stage (defaults: the embedded benchmark on CPU).

    The OAA paper on VOC: VGG16 (pretrained), lr 1e-3 (new layers x10), momentum 0.9, weight decay
    2e-4, batch 5, step schedule (x0.1 after 2/3 of the iterations), no geometric augmentation.
    """

    epochs: int = 15
    gate: str = "paper"
    gate_start_epoch: int = 0
    last_epoch_fallback: bool = False
    store_size: int = 0  # 0: crop_size / output_stride (the feature map's own resolution)
    n_snapshots: int = 8
    init_from: str = ""  # an official OAA / OAA+ checkpoint (.pth): score its CAMs, train nothing

    QUICK: ClassVar[dict] = {"epochs": 2, "batch_size": 8, "n_snapshots": 4}

    def validate(self) -> "ClassifierConfig":
        super().validate()
        self.check("gate", self.gate in GATES, f"one of {GATES}")
        self.check("gate_start_epoch", self.gate_start_epoch >= 0, "an integer >= 0")
        self.check("store_size", self.store_size >= 0, "an integer >= 0 (0 = automatic)")
        self.check("init_from", not self.init_from or Path(self.init_from).is_file(),
                   "empty, or an existing official OAA/OAA+ checkpoint file (.pth)")
        return self


class SnapshotRecorder:
    """Attention of a fixed subset of training images at every epoch, in the image frame."""

    def __init__(self, indices: list[int], num_classes: int, size: tuple[int, int], epochs: int) -> None:
        self.indices = list(indices)
        self.pos = {i: k for k, i in enumerate(self.indices)}
        self.maps = torch.zeros((epochs, len(indices), num_classes, *size))
        self.seen = torch.zeros((epochs, len(indices)), dtype=torch.bool)

    @torch.no_grad()
    def record(self, epoch: int, indices: torch.Tensor, maps_img: torch.Tensor) -> None:
        for b, i in enumerate(indices.tolist()):
            k = self.pos.get(i)
            if k is not None:
                self.maps[epoch, k] = maps_img[b].detach().float().cpu()
                self.seen[epoch, k] = True

    def state_dict(self) -> dict:
        return {"indices": self.indices, "maps": self.maps, "seen": self.seen}

    def load_state_dict(self, sd: dict) -> None:
        self.maps, self.seen = sd["maps"], sd["seen"]


@stage_entry
def run_classifier_stage(data_root: str = "", run_dir: str = "", seed: int = 0, device: str = "auto",
                         quick: bool = False, progress: bool = True, stop_after_steps: int | None = None,
                         **params) -> Path:
    """Train (or resume, or reuse) a classifier + OAA run and return its folder.

    Args:
        data_root: VOC-layout folder; ``""`` = the embedded benchmark (quick: its tiny variant).
        run_dir: ``""`` = ``runs/oaa-<hash of parameters>``.
        seed: seeds initialization, data order and augmentation.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        quick: tiny settings for tests and smoke runs.
        **params: any :class:`ClassifierConfig` field.
    """
    cfg = ClassifierConfig.from_params(quick=quick, seed=seed, device=device, **params)
    root = resolve_data_root(data_root, quick)
    dev = resolve_device(device)
    layout = VOCLayout(root, "train")
    layout.check(progress=progress)  # before any folder is made: lists every bad file at once
    all_params = {"data_root": str(root), "data": data_identity(root), "seed": seed, "quick": quick,
                  "device": str(dev), **asdict(cfg)}
    if cfg.init_from:  # identified by the file's digest, not its path
        all_params.update(init_from=Path(cfg.init_from).name, official_checkpoint_sha256=file_digest(cfg.init_from))
    out = prepare_run("oaa-official-ckpt" if cfg.init_from else "oaa", all_params, run_dir)
    if is_finished(out):
        return out
    seed_everything(seed)
    if cfg.init_from:
        return _score_official_checkpoint(Path(cfg.init_from), cfg, root, layout, out, dev, progress)
    ts = training_set(root, cfg.crop_size, cfg.output_stride, cfg.store_size, layout=layout)
    dataset, crop, size, k = ts.dataset, ts.crop, ts.size, ts.num_classes
    model = build_cam_net(cfg.backbone, k, pretrained=cfg.pretrained, output_stride=cfg.output_stride).to(dev)
    opt = torch.optim.SGD(model.param_groups(cfg.lr, cfg.weight_decay), lr=cfg.lr, momentum=cfg.momentum)
    labels = torch.from_numpy(layout.labels)
    store = OAAStore(layout.ids, labels, size, gate=cfg.gate, start_epoch=cfg.gate_start_epoch,
                     last_epoch_fallback=cfg.last_epoch_fallback, device=dev)
    snap_idx = np.linspace(0, len(layout) - 1, min(cfg.n_snapshots, len(layout))).round().astype(int).tolist()
    snaps = SnapshotRecorder(snap_idx, k, size, cfg.epochs)

    def step(b: Batch) -> torch.Tensor:
        F = model(b.views)
        logits = class_scores(F.float())
        loss = Fn.binary_cross_entropy_with_logits(logits, b.labels)
        with torch.no_grad():
            A = attention_maps(F.detach().float())
            A_img, valid = views_to_image_frame(A, b.geo, size)
            store.update(b.indices, A_img, valid, logits.detach(), b.labels, b.epoch, last_epoch=b.last_epoch)
            snaps.record(b.epoch, b.indices, A_img)
        return loss

    loop = LoopConfig(cfg.epochs, cfg.batch_size, seed, crop, cfg.augment, cfg.scale_range,
                      cfg.num_workers, cfg.checkpoint_every, cfg.amp)
    res = fit(model, opt, cfg.schedule, dataset, loop, out, step, {"store": store, "snapshots": snaps},
              dev, progress, desc="classifier+OAA", stop_after_steps=stop_after_steps)

    # -- outputs ----------------------------------------------------------------------------
    t0 = time.perf_counter()
    cam_maps, _ = infer_attention(model, dataset, size, crop, dev, progress=progress)
    sources = {"cam": dense_source(cam_maps, layout), "oaa_max": store.attention_source("max"),
               "oaa_ave": store.attention_source("ave")}
    torch_save(out / "snapshots.pt", {"indices": snap_idx, "ids": [layout.ids[i] for i in snap_idx],
                                      "maps": snaps.maps.half(), "seen": snaps.seen,
                                      "final_cam": cam_maps[snap_idx].half(),
                                      "oaa_max": _dense(store, "max", snap_idx),
                                      "oaa_ave": _dense(store, "ave", snap_idx)})
    evals = save_and_score(out, root, sources, {"history": res.history})
    val_layout = VOCLayout(root, "val")
    _, val_logits = infer_attention(model, VOCSegDataset(val_layout, with_mask=False), size, crop, dev)
    cls_map = mean_average_precision(val_logits.numpy(), val_layout.labels)
    metrics = {**flat_metrics(evals), "cls_mAP_val": cls_map, "train_seconds": res.seconds,
               "eval_seconds": time.perf_counter() - t0, "final_loss": res.history[-1]["loss"],
               "oaa_accepted_fraction": float((store.counts > 0).float().mean()),
               "oaa_mean_accepted_updates": float(store.counts.float().mean()),
               "store_megabytes": store.nbytes() / 2**20}
    write_metrics(out, metrics)
    return out


def _score_official_checkpoint(path: Path, cfg: ClassifierConfig, root: Path, layout: VOCLayout, out: Path,
                               dev, progress: bool) -> Path:
    """An official OAA classifier or OAA+ model: its CAMs (eq. 2) by our batched inference, scored
    like a trained run's ``cam`` source (no OAA maps: those exist only while training)."""
    from ..models.official import load_official_checkpoint

    model = load_official_checkpoint(path, "oaa").to(dev)
    ts = training_set(root, cfg.crop_size, model.output_stride, cfg.store_size, layout=layout)
    if model.num_classes != ts.num_classes:
        raise ValueError(f"init_from={str(path)!r}: the official checkpoint has {model.num_classes} classes, the "
                         f"data at {root} has {ts.num_classes} foreground classes")
    t0 = time.perf_counter()
    cam_maps, _ = infer_attention(model, ts.dataset, ts.size, ts.crop, dev, progress=progress)
    evals = save_and_score(out, root, {"cam": dense_source(cam_maps, layout)}, {"history": []})
    write_metrics(out, {**flat_metrics(evals), "train_seconds": 0.0, "eval_seconds": time.perf_counter() - t0})
    return out


def _dense(store: OAAStore, kind: str, idx: list[int]) -> torch.Tensor:
    """``len(idx) x K x H x W`` accumulated maps of some images (zeros for absent classes)."""
    maps = store.max_maps if kind == "max" else store.ave_maps
    out = torch.zeros((len(idx), store.num_classes, *store.size), dtype=torch.float16)
    for j, i in enumerate(idx):
        for c in range(store.num_classes):
            s = int(store.slot_of[i, c])
            if s >= 0:
                out[j, c] = maps[s].half().cpu()
    return out


__all__ = ["ClassifierConfig", "run_classifier_stage"]
