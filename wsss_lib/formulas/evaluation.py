"""Scoring attention maps as pseudo labels: CAM mIoU with a background-threshold sweep, and
classification mAP.

CAM mIoU (docs/design.md section 3): per image, a constant background score (the threshold) is stacked
under the maps of the classes present, the argmax is the label, a confusion matrix over all images
is accumulated (ignore 255), and mIoU is the mean over the K+1 classes of TP / (TP + FP + FN).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as Fn
from sklearn.metrics import average_precision_score

from wsss_lib.formulas.metrics import iou_from_confusion

DEFAULT_THRESHOLDS = tuple(round(x, 2) for x in np.arange(0.05, 0.96, 0.05))


class CAMEvaluator:
    """Scores any number of attention sources against a split's masks (uint8, shared by every
    evaluator of the process: :meth:`~wsss_lib.data.voc.VOCLayout.mask_tensor`)."""

    def __init__(self, layout, thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
                 device: torch.device | str = "cpu") -> None:
        self.layout = layout
        #: where the maps are upsampled and the pixels counted (the masks stay on the host, uint8,
        #: and go there a chunk at a time); the counts are the same on any device up to the bilinear
        #: upsampling's last bits
        self.device = torch.device(device)
        self.thresholds = torch.tensor(list(thresholds), dtype=torch.float32)
        self.k1 = layout.num_classes
        self.masks = []
        for i in range(len(layout)):
            m = layout.mask_tensor(i)
            if m is None:
                raise ValueError(f"image {layout.ids[i]} has no mask: CAM mIoU needs masks")
            self.masks.append(m)
        self.index = {iid: i for i, iid in enumerate(layout.ids)}

    def confusion(self, source: dict, chunk: int = 64) -> torch.Tensor:
        """``T x (K+1) x (K+1)`` confusion matrices, one per threshold.

        Images of equal size are scored together in chunks: their present-class maps are stacked
        (padded with -1 to the largest class count) and one bincount covers all thresholds."""
        t_count, k1 = len(self.thresholds), self.k1
        by_image: dict[int, list[int]] = {}
        for s, img in enumerate(source["slot_image"].tolist()):
            by_image.setdefault(img, []).append(s)
        src_of_layout = {self.index[iid]: j for j, iid in enumerate(source["image_ids"]) if iid in self.index}
        missing = len(self.layout) - len(src_of_layout)
        if missing:
            raise ValueError(f"attention source lacks maps for {missing} of {len(self.layout)} images "
                             f"of split {self.layout.split!r}")
        groups: dict[tuple[int, int], list[int]] = {}
        for li, mask in enumerate(self.masks):
            groups.setdefault(tuple(mask.shape), []).append(li)
        # A pixel with max score v and label l predicts l at every threshold below v and background
        # at the others, so one histogram over (gt, l, #thresholds below v) gives all T matrices.
        dev = self.device
        thresholds = self.thresholds.to(dev)
        hist = torch.zeros(k1 * k1 * (t_count + 1), dtype=torch.int64, device=dev)
        maps_all, cls_all = source["maps"].float(), source["slot_class"]
        for (h, w), members in groups.items():
            for start in range(0, len(members), chunk):
                part = members[start:start + chunk]
                slot_lists = [by_image.get(src_of_layout[li], []) for li in part]
                cmax = max(1, max(len(sl) for sl in slot_lists))
                n = len(part)
                dense = torch.full((n, cmax, *maps_all.shape[1:]), -1.0)
                cls = torch.zeros((n, cmax), dtype=torch.int64)
                for j, sl in enumerate(slot_lists):
                    if sl:
                        dense[j, :len(sl)] = maps_all[sl]
                        cls[j, :len(sl)] = cls_all[sl] + 1
                dense, cls = dense.to(dev, non_blocking=True), cls.to(dev, non_blocking=True)
                up = Fn.interpolate(dense, size=(h, w), mode="bilinear", align_corners=False)
                maxv, arg = up.max(1)  # n x h x w
                label = cls.gather(1, arg.view(n, -1)).view(n, h, w)
                below = torch.searchsorted(thresholds, maxv.contiguous(), right=False)
                gt = torch.stack([self.masks[li] for li in part]).to(dev, non_blocking=True).long()
                keep = gt != 255
                idx = ((gt * k1 + label) * (t_count + 1) + below)[keep]
                hist += torch.bincount(idx, minlength=hist.numel())
        hist = hist.cpu().view(k1, k1, t_count + 1)
        # above[g, l, j] = pixels with #thresholds-below > j, i.e. v > threshold j: predicted l
        csum = hist.cumsum(-1)
        above = csum[..., -1:] - csum[..., :t_count]
        cm = above.permute(2, 0, 1).clone()  # T x gt x pred
        # every pixel not above threshold j is predicted background
        cm[:, :, 0] += hist.sum(1).cumsum(-1)[:, :t_count].T
        return cm.view(t_count, k1, k1)

    def evaluate(self, source: dict) -> dict:
        """mIoU per threshold, the best threshold, and foreground precision/recall there."""
        cms = self.confusion(source).numpy()
        mious = np.array([np.nanmean(iou_from_confusion(c)) for c in cms])
        b = int(np.nanargmax(mious))
        cm = cms[b].astype(np.float64)
        fg_tp = cm[1:, 1:].sum()
        return {"thresholds": self.thresholds.tolist(), "miou_curve": mious.tolist(),
                "best_threshold": float(self.thresholds[b]), "miou": float(mious[b]),
                "fg_precision": float(fg_tp / max(cm[:, 1:].sum(), 1)),
                "fg_recall": float(fg_tp / max(cm[1:, :].sum(), 1)),
                "per_class_iou": iou_from_confusion(cm).tolist(), "confusion": cms[b].tolist()}


def mean_average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Classification mAP over classes that have at least one positive."""

    aps = [average_precision_score(labels[:, c], scores[:, c]) for c in range(labels.shape[1])
           if labels[:, c].any()]
    return float(np.mean(aps)) if aps else float("nan")
