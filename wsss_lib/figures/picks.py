"""Which examples a figure shows: chosen by a stated rule, never by index 0.

A figure of attention maps is read row by row; a first row whose class the classifier does not see
is an empty picture that looks like a bug. :func:`detected_picks` takes, in id order, the images
whose map of a present class is *detected*: not empty, and peaking on that class's object
(:func:`detects`). Every figure that uses it prints :data:`PICK_RULE` under it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as Fn

#: the rule, as the figures state it under themselves
PICK_RULE = ("Examples: the first training images (in id order) with a present class whose map (the CAM, unless "
             "said otherwise) is detected: not empty, and peaking on that class's object; each row shows that class.")


def detects(att: np.ndarray | torch.Tensor, obj: np.ndarray) -> bool:
    """Whether an attention map (any resolution) finds the object ``obj`` (a boolean mask): the map is
    not zero everywhere and its peak, at the mask's resolution, lies on the object."""
    a = torch.as_tensor(np.asarray(att, dtype=np.float32))
    if not obj.any() or float(a.max()) <= 0:
        return False
    up = Fn.interpolate(a[None, None], size=obj.shape, mode="bilinear", align_corners=False)[0, 0]
    k = int(up.argmax())
    return bool(obj.reshape(-1)[k])


def detected_picks(layout, source: dict, n: int = 6, candidates: Sequence[int] | None = None) -> list[tuple[int, int]]:
    """Up to ``n`` ``(image index, class)`` pairs by :data:`PICK_RULE`: the images of ``candidates``
    (default: every training image) in order, each with its first present class whose map in
    ``source`` (an attention source, :mod:`wsss_lib.runs.attention_io`) is detected. When fewer are
    detected, the first images are added with their first present class, so a figure never runs short."""
    slot = {(int(i), int(c)): s for s, (i, c) in enumerate(zip(source["slot_image"].tolist(),
                                                                source["slot_class"].tolist()))}
    order = list(range(len(layout))) if candidates is None else list(candidates)
    out: list[tuple[int, int]] = []
    for i in order:
        mask = layout.load_mask(i)
        for c in np.flatnonzero(layout.labels[i]):
            s = slot.get((int(i), int(c)))
            if s is not None and mask is not None and detects(source["maps"][s], mask == c + 1):
                out.append((int(i), int(c)))
                break
        if len(out) == n:
            return out
    chosen = {i for i, _ in out}
    for i in order:
        if len(out) == n:
            break
        present = np.flatnonzero(layout.labels[i])
        if i not in chosen and present.size:
            out.append((int(i), int(present[0])))
    return out


def detected_snapshot_rows(snapshots: dict, layout, n: int = 4) -> list[int]:
    """Rows of a classifier run's ``snapshots.pt`` by :data:`PICK_RULE`, read on the final CAM of the
    first present class (the class the evolution figures show); the first rows fill up."""
    rows = []
    for j, i in enumerate(snapshots["indices"]):
        present = np.flatnonzero(layout.labels[i])
        mask = layout.load_mask(i)
        if present.size and mask is not None and detects(snapshots["final_cam"][j, int(present[0])].float(),
                                                         mask == int(present[0]) + 1):
            rows.append(j)
        if len(rows) == n:
            return rows
    rows += [j for j in range(len(snapshots["indices"])) if j not in rows][:n - len(rows)]
    return rows


def labelled_picks(layout, label_of, n: int = 5) -> list[int]:
    """Up to ``n`` images (in id order) whose label map ``label_of(i)`` (a pseudo label or a prediction)
    gives some pixels to a class the image holds (:data:`LABEL_PICK_RULE`); the first images fill up."""
    out = []
    for i in range(len(layout)):
        lab = np.asarray(label_of(i))
        present = set((np.flatnonzero(layout.labels[i]) + 1).tolist())
        if present & set(np.unique(lab).tolist()):
            out.append(i)
        if len(out) == n:
            return out
    return out + [i for i in range(len(layout)) if i not in out][:n - len(out)]


#: the rule of :func:`labelled_picks`, as the figures state it
LABEL_PICK_RULE = ("Examples: the first images (in id order) whose label map gives some pixels to a class the "
                   "image holds.")

__all__ = ["LABEL_PICK_RULE", "PICK_RULE", "detected_picks", "detected_snapshot_rows", "detects", "labelled_picks"]
