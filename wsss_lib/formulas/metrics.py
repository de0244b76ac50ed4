"""Segmentation metrics: confusion matrix over K+1 classes with an ignore index, IoU, mIoU."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch

IGNORE_INDEX = 255


def confusion_matrix(pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray,
                     num_classes: int, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """``num_classes x num_classes`` int64 counts; row = ground truth, column = prediction.

    Pixels whose target is ``ignore_index`` are left out. Predictions must lie in
    ``0..num_classes-1``; targets must too, apart from ``ignore_index``.
    """
    pred = torch.as_tensor(pred).reshape(-1).long()
    target = torch.as_tensor(target).reshape(-1).long()
    if pred.shape != target.shape:
        raise ValueError(f"pred has {pred.numel()} pixels but target has {target.numel()}")
    keep = target != ignore_index
    pred, target = pred[keep], target[keep]
    for name, t in (("target", target), ("pred", pred)):
        if t.numel() and (t.min() < 0 or t.max() >= num_classes):
            raise ValueError(f"{name} has values outside 0..{num_classes - 1}: "
                             f"{sorted(set(t[(t < 0) | (t >= num_classes)].tolist()))[:10]}")
    cm = torch.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return cm.reshape(num_classes, num_classes).cpu().numpy().astype(np.int64)


def iou_from_confusion(cm: np.ndarray) -> np.ndarray:
    """Per-class IoU = TP / (TP + FP + FN); NaN for a class absent from both target and prediction."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    denom = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, tp / np.where(denom > 0, denom, 1), np.nan)


def mean_iou(cm: np.ndarray) -> float:
    """Mean of the per-class IoUs, ignoring classes that never occur (NaN)."""
    iou = iou_from_confusion(cm)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def iou_table(cm: np.ndarray, class_names: Sequence[str]) -> pd.DataFrame:
    """Per-class table (IoU, precision, recall, pixels) with a final ``mIoU`` row."""
    cm = np.asarray(cm, dtype=np.float64)
    if cm.shape != (len(class_names), len(class_names)):
        raise ValueError(f"confusion matrix is {cm.shape} but {len(class_names)} class names were given")
    tp = np.diag(cm)
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = tp / cm.sum(0)
        rec = tp / cm.sum(1)
    df = pd.DataFrame({"IoU": iou_from_confusion(cm), "precision": prec, "recall": rec,
                       "gt_pixels": cm.sum(1).astype(np.int64)}, index=list(class_names))
    df.loc["mIoU"] = [mean_iou(cm), np.nanmean(prec), np.nanmean(rec), int(cm.sum())]
    df.index.name = "class"
    return df
