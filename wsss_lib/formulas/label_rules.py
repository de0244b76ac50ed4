"""Pseudo labels from attention: the two ways the papers turn attention maps into label maps.

Both take, per image, the attention maps of its *present* classes (``P x H x W``, values in
``[0, 1]``; absent classes never get a pixel) and return an ``H x W`` uint8 label map in VOC
convention: 0 background, ``c + 1`` for foreground class ``c``, 255 ignore.

- :func:`threshold_labels` (IRN / AMR convention): per pixel the present class with the highest
  attention; background where every present class is below the threshold.
- :func:`saliency_labels` (OAA section 4, with the thresholds of the official ``gen_gt.py``): the
  attention is the object cue, a class-agnostic saliency map the background cue; pixels where the
  cues conflict are ignored (255).

:func:`official_attention_prep` prepares attention as the official OAA pipeline does before
``gen_gt.py`` (``res.py``: 8-bit maps, bicubic resize, min-max, truncation); the default is a
bilinear resize of the float maps. :func:`write_label_png` / :func:`read_label_png` store labels as
VOC palette PNGs.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from wsss_lib.data.spec import voc_colormap
from wsss_lib.util.io import atomic_path

IGNORE = 255


def _check(att: np.ndarray, classes) -> tuple[np.ndarray, np.ndarray]:
    """The maps as float32 and the classes, both in ascending class order: an argmax over them then
    breaks ties towards the lowest class index, as the official code's argmax over all 21 channels."""
    att = np.asarray(att, dtype=np.float32)
    classes = np.asarray(classes, dtype=np.int64).reshape(-1)
    if att.ndim != 3 or att.shape[0] != classes.size:
        raise ValueError(f"attention must be P x H x W with one map per present class; got shape {att.shape} "
                         f"for {classes.size} classes")
    order = np.argsort(classes, kind="stable")
    return att[order], classes[order]


def official_attention_prep(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Attention maps (``P x h x w`` in ``[0, 1]``, max-normalized) brought to the image size ``(H, W)``
    as the official OAA pipeline brings them: stored as 8-bit PNGs (rounded, as ``cv2.imwrite``
    writes a float image), resized with OpenCV's bicubic filter, min-max normalized (+1e-8),
    scaled to 255 and truncated to uint8 (``res.py``); returned as floats in ``[0, 1]`` (``/255``).
    Needs OpenCV (``opencv-python-headless``, in requirements.lock)."""
    try:
        import cv2  # lazy: optional: absent on some machines (the except clause says what then)
    except ImportError as e:  # pragma: no cover - the lock installs it
        raise ImportError("attention_prep='official' needs OpenCV: pip install opencv-python-headless") from e
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim != 3:
        raise ValueError(f"attention must be P x h x w; got shape {maps.shape}")
    h, w = int(size[0]), int(size[1])
    out = np.empty((maps.shape[0], h, w), dtype=np.float32)
    for p, m in enumerate(maps):
        png = np.clip(np.rint(m * 255), 0, 255).astype(np.uint8)
        att = cv2.resize(png, (w, h), interpolation=cv2.INTER_CUBIC)
        att = (att - np.min(att)) / (np.max(att) - np.min(att) + 1e-8)
        out[p] = np.array(att * 255, dtype=np.uint8) / 255.0
    return out


def threshold_labels(att: np.ndarray, classes, threshold: float = 0.3) -> np.ndarray:
    """Per pixel, ``classes[argmax_p att[p]] + 1``; 0 (background) where ``max_p att[p] < threshold``.
    Ties go to the lowest class index, whatever order ``classes`` lists them in.

    ``att``: ``P x H x W`` attention of the image's present classes ``classes`` (0-based
    foreground indices). With no present class every pixel is background."""
    att, classes = _check(att, classes)
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold={threshold!r} is invalid: expected a number in [0, 1]")
    if classes.size == 0:
        return np.zeros(att.shape[1:], dtype=np.uint8)
    best = att.argmax(0)
    out = (classes[best] + 1).astype(np.uint8)
    out[att.max(0) < threshold] = 0
    return out


def saliency_labels(att: np.ndarray, classes, saliency: np.ndarray, fg_threshold: float = 0.3,
                    conflict: float = 0.9, bg_saliency: float = 32 / 255, att_salient: float = 0.8,
                    min_fg_ratio: float = 0.01) -> np.ndarray:
    """OAA section 4: attention as the object cue, saliency as the background cue, conflicts ignored.

    The rule of the official ``gen_gt.py`` (thresholds as its defaults; saliency in ``[0, 1]``):

    1. scores: background ``1 - saliency``; class ``c``: its attention min-max normalized;
    2. every score below ``fg_threshold`` is dropped (set to 0), background included;
    3. label = argmax of the scores (0 when all were dropped; ties: background, then the lowest class
       index, as the official argmax over the 21 channels);
    4. *conflict between classes*: where two or more scores exceed ``conflict``, ignore;
    5. *conflict between cues*: a pixel labelled background that is salient (saliency >=
       ``bg_saliency``) or strongly attended (some class attention > ``att_salient``), ignore;
    6. an image whose confident foreground covers less than ``min_fg_ratio`` is ignored entirely.
    """
    att, classes = _check(att, classes)
    sal = np.asarray(saliency, dtype=np.float32)
    if sal.shape != att.shape[1:]:
        raise ValueError(f"saliency map of shape {sal.shape} does not match the attention's {att.shape[1:]}")
    lo = att.min(axis=(1, 2), keepdims=True)
    hi = att.max(axis=(1, 2), keepdims=True)
    norm = (att - lo) / (hi - lo + 1e-8)
    scores = np.concatenate([(1 - sal)[None], norm]) if classes.size else (1 - sal)[None]
    scores = np.where(scores < fg_threshold, 0.0, scores)
    confident = (scores > conflict).sum(0)
    best = scores.argmax(0)
    label_of = np.concatenate([[0], classes + 1]).astype(np.uint8)
    out = label_of[best]
    out[confident > 1] = IGNORE
    salient = sal >= bg_saliency
    if classes.size:
        salient |= (norm > att_salient).any(0)
    out[(out == 0) & salient] = IGNORE
    fg = ((out > 0) & (out < IGNORE)).sum()
    if fg < min_fg_ratio * out.size:
        out[...] = IGNORE
    return out


def explain_cues(att: np.ndarray, classes, saliency: np.ndarray, fg_threshold: float = 0.3, conflict: float = 0.9,
                 bg_saliency: float = 32 / 255, att_salient: float = 0.8, min_fg_ratio: float = 0.01) -> dict:
    """What each cue says about every pixel of one image (for teaching; the labels are
    :func:`saliency_labels`'s): ``object`` (the attention alone: the best present class where its
    normalized attention reaches ``fg_threshold``, else 0), ``background`` (True where the background
    score ``1 - saliency`` reaches ``fg_threshold``), ``conflict`` (True where the final label is
    ignore but some cue had an answer) and ``labels`` (the final map)."""
    att, classes = _check(att, classes)
    lo = att.min(axis=(1, 2), keepdims=True)
    hi = att.max(axis=(1, 2), keepdims=True)
    norm = (att - lo) / (hi - lo + 1e-8)
    obj = threshold_labels(norm, classes, fg_threshold) if classes.size else np.zeros(att.shape[1:], np.uint8)
    bg = (1 - np.asarray(saliency, dtype=np.float32)) >= fg_threshold
    labels = saliency_labels(att, classes, saliency, fg_threshold, conflict, bg_saliency, att_salient, min_fg_ratio)
    return {"object": obj, "background": bg, "labels": labels,
            "conflict": (labels == IGNORE) & ((obj > 0) | bg), "attention": norm.max(0) if classes.size else norm.sum(0)}


def write_label_png(path: str | os.PathLike, labels: np.ndarray) -> Path:
    """A label map as a VOC palette PNG (written to a temp file, then renamed)."""

    img = Image.fromarray(np.asarray(labels, dtype=np.uint8), mode="P")
    img.putpalette(voc_colormap().reshape(-1).tolist())
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return Path(path)


def read_label_png(path: str | os.PathLike) -> np.ndarray:

    with Image.open(path) as im:
        if im.mode != "P":
            raise ValueError(f"{path}: a label PNG must be a palette image (mode P), got mode {im.mode}")
        return np.array(im)


__all__ = ["IGNORE", "explain_cues", "official_attention_prep", "read_label_png", "saliency_labels", "threshold_labels", "write_label_png"]
