"""Pieces every training stage shares: the training set and its resolutions, and writing +
scoring attention sources."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from wsss_lib.data.transforms import ViewGeometry
from wsss_lib.data.voc import VOCLayout, VOCSegDataset
from wsss_lib.engine.loop import collate_samples, loader_workers, make_views
from wsss_lib.formulas.attention import multiscale_attention
from wsss_lib.formulas.evaluation import CAMEvaluator
from wsss_lib.models.cam import CAMNet, build_cam_net
from wsss_lib.runs.attention_io import save_attention
from wsss_lib.util.io import write_json


@dataclass
class TrainingSet:
    layout: VOCLayout
    dataset: VOCSegDataset
    crop: int  # training view size
    size: tuple[int, int]  # attention map size (image frame)
    num_classes: int  # foreground classes


def training_set(root: Path, crop_size: int, output_stride: int, store_size: int = 0,
                 layout: VOCLayout | None = None) -> TrainingSet:
    if layout is None:  # a layout passed in was checked by its stage already
        layout = VOCLayout(root, "train")
        layout.check()  # every image decodes and every mask fits it, before any training (lists all bad files)
    dataset = VOCSegDataset(layout, with_mask=False, cache_in_memory=len(layout) <= 20000)
    h0, w0 = dataset[0]["image"].shape[1:]
    crop = crop_size or int(max(h0, w0))
    feat = -(-crop // output_stride)
    return TrainingSet(layout, dataset, crop, (store_size or feat,) * 2, layout.num_classes - 1)


def build_attention_net(cfg, num_classes: int, weights: dict) -> CAMNet:
    """The CAM network a config of :class:`~wsss_lib.engine.config.AttentionTrainConfig` describes
    (backbone, its weights from ``weights`` by backbone name, output stride, width, head), as the
    classifier and OAA+ train it."""
    return build_cam_net(cfg.backbone, num_classes, weights.get(cfg.backbone), output_stride=cfg.output_stride,
                         width=cfg.width, head_convs=cfg.head_convs, head_init=cfg.head_init)


def present_slots(labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    pairs = torch.from_numpy(np.asarray(labels)).nonzero()
    return pairs[:, 0], pairs[:, 1]


def dense_source(maps: torch.Tensor, layout: VOCLayout) -> dict:
    """An attention source from dense ``N x K x H x W`` maps: one map per (image, present class)."""
    si, sc = present_slots(layout.labels)
    return {"image_ids": layout.ids, "slot_image": si, "slot_class": sc, "maps": maps[si, sc].float()}


def snapshot_epoch_miou(snapshots: dict, layout) -> list[float]:
    """CAM mIoU of each epoch's training-time attention on a run's snapshot images (``snapshots.pt``
    of a classifier run: ``maps`` ``E x n x K x h x w`` in the image frame, ``indices`` into
    ``layout``), best background threshold of the usual sweep per epoch; an epoch in which an
    image was not seen counts its maps as empty."""

    sub = layout.subset(snapshots["indices"])
    evaluator = CAMEvaluator(sub)
    out = []
    for e in range(snapshots["maps"].shape[0]):
        maps = snapshots["maps"][e].float() * snapshots["seen"][e].float()[:, None, None, None]
        out.append(float(evaluator.evaluate(dense_source(maps, sub))["miou"]))
    return out


def save_and_score(out: Path, root: Path, sources: dict[str, dict], extra: dict | None = None,
                   layout: VOCLayout | None = None, device: torch.device | str = "cpu") -> dict:
    """Write ``attention/<name>.pt`` for each source, score each on the train split (or on ``layout``,
    a part of it) on ``device`` (the run's: upsampling and counting on the GPU where it has one),
    write ``evaluation.json``; returns the per-source evaluations."""
    (out / "attention").mkdir(exist_ok=True)
    for name, src in sources.items():
        save_attention(out / "attention" / f"{name}.pt", src, name)
    evaluator = CAMEvaluator(layout if layout is not None else VOCLayout(root, "train"), device=device)
    evals = {name: evaluator.evaluate(src) for name, src in sources.items()}
    write_json(out / "evaluation.json", {"sources": evals, **(extra or {})})
    return evals


def flat_metrics(evals: dict) -> dict:
    m = {}
    for name, ev in evals.items():
        for key in ("miou", "best_threshold", "fg_precision", "fg_recall"):
            m[f"{name}_{key}"] = ev[key]
    return m


@torch.no_grad()
def infer_attention(model: torch.nn.Module, dataset, size: tuple[int, int], crop_size: int,
                    device: torch.device, batch_size: int = 32, progress: bool = False,
                    scales=(1.0,), flip: bool = False, amp: bool = True):
    """Attention (eq. 2) and logits of every image, in the image frame at ``size``.

    Images are resized to ``crop_size`` (the training resolution); single scale without flip by
    default, so every attention source of a table is read the same way as the OAA store's maps.
    Returns ``(maps N x K x H x W, logits N x K)`` (for a two-branch model, maps is a tuple)."""

    was_training = model.training
    model.eval()
    all_maps, all_logits = [], []
    ident = ViewGeometry().as_tensor()
    # the images in order, read by loader workers (on CUDA) into pinned batches, variable sizes on one
    # canvas: one non-blocking copy a batch
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_samples,
                        num_workers=loader_workers(device), pin_memory=device.type == "cuda")
    for raw in tqdm(loader, desc="inference", leave=False, disable=not progress):
        geo = ident.expand(len(raw["ids"]), 5).clone()
        x = make_views(raw["images"], geo, crop_size, device, sizes=raw["sizes"])
        maps, logits = multiscale_attention(model, x, scales, flip, out_size=size, amp=amp, return_logits=True)
        all_maps.append(tuple(m.cpu() for m in maps) if isinstance(maps, tuple) else maps.cpu())
        all_logits.append((logits[0] if isinstance(logits, tuple) else logits).cpu())
    model.train(was_training)
    if isinstance(all_maps[0], tuple):
        return tuple(torch.cat(parts) for parts in zip(*all_maps)), torch.cat(all_logits)
    return torch.cat(all_maps), torch.cat(all_logits)
