"""The one attention format every stage writes and every later stage reads.

A run folder holds ``attention/<source>.pt`` (``torch.save`` of a dict), one per attention source
(``cam``, ``oaa_max``, ``oaa_ave``, ``oaa_plus``, ``amr``...):

=============== =====================================================================
``image_ids``   list of N image ids (the split's order)
``slot_image``  int64 ``S``: image index (into ``image_ids``) of each map
``slot_class``  int64 ``S``: 0-based foreground class of each map (mask value - 1)
``maps``        float ``S x H x W`` in ``[0, 1]``, over the whole image (normalized image
                frame: resize to each image's own size with bilinear interpolation)
``frame``       ``"image"``
``source``      the source name
=============== =====================================================================

There is one map per (image, present class): the pseudo-label stage needs no other classes.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from wsss_lib.util.io import torch_load, torch_save

REQUIRED = ("image_ids", "slot_image", "slot_class", "maps")


def save_attention(path: str | os.PathLike, source: dict, name: str) -> Path:
    validate_attention(source, str(path))
    blob = {k: source[k] for k in REQUIRED}
    blob["maps"] = blob["maps"].detach().cpu().to(torch.float16)
    blob.update(frame="image", source=name)
    return torch_save(path, blob)


def load_attention(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"attention file {path} not found; expected a run folder's "
                                "attention/<source>.pt")
    blob = torch_load(path)
    validate_attention(blob, str(path))
    blob["maps"] = blob["maps"].float()
    return blob


def validate_attention(src: dict, where: str = "attention source") -> None:
    missing = [k for k in REQUIRED if k not in src]
    if missing:
        raise ValueError(f"{where}: missing keys {missing}; expected {REQUIRED}")
    s = src["maps"].shape[0]
    if src["maps"].dim() != 3 or src["slot_image"].shape[0] != s or src["slot_class"].shape[0] != s:
        raise ValueError(f"{where}: maps must be S x H x W with S slot_image/slot_class entries")
