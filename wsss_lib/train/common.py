"""Pieces every training stage shares: the training set and its resolutions, and writing +
scoring attention sources."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..attention_io import save_attention
from ..data.voc import VOCLayout, VOCSegDataset
from ..evaluation import CAMEvaluator
from ..io import write_json


@dataclass
class TrainingSet:
    layout: VOCLayout
    dataset: VOCSegDataset
    crop: int  # training view size
    size: tuple[int, int]  # attention map size (image frame)
    num_classes: int  # foreground classes


def training_set(root: Path, crop_size: int, output_stride: int, store_size: int = 0,
                 layout: VOCLayout | None = None) -> TrainingSet:
    layout = layout or VOCLayout(root, "train")
    dataset = VOCSegDataset(layout, with_mask=False, cache_in_memory=len(layout) <= 20000)
    h0, w0 = dataset[0]["image"].shape[1:]
    crop = crop_size or int(max(h0, w0))
    feat = -(-crop // output_stride)
    return TrainingSet(layout, dataset, crop, (store_size or feat,) * 2, layout.num_classes - 1)


def present_slots(labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    pairs = torch.from_numpy(np.asarray(labels)).nonzero()
    return pairs[:, 0], pairs[:, 1]


def dense_source(maps: torch.Tensor, layout: VOCLayout) -> dict:
    """An attention source from dense ``N x K x H x W`` maps: one map per (image, present class)."""
    si, sc = present_slots(layout.labels)
    return {"image_ids": layout.ids, "slot_image": si, "slot_class": sc, "maps": maps[si, sc].float()}


def save_and_score(out: Path, root: Path, sources: dict[str, dict], extra: dict | None = None) -> dict:
    """Write ``attention/<name>.pt`` for each source, score each on the train split, write
    ``evaluation.json``; returns the per-source evaluations."""
    (out / "attention").mkdir(exist_ok=True)
    for name, src in sources.items():
        save_attention(out / "attention" / f"{name}.pt", src, name)
    evaluator = CAMEvaluator(VOCLayout(root, "train"))
    evals = {name: evaluator.evaluate(src) for name, src in sources.items()}
    write_json(out / "evaluation.json", {"sources": evals, **(extra or {})})
    return evals


def flat_metrics(evals: dict) -> dict:
    m = {}
    for name, ev in evals.items():
        for key in ("miou", "best_threshold", "fg_precision", "fg_recall"):
            m[f"{name}_{key}"] = ev[key]
    return m
