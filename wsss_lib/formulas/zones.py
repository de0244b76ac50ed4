"""Where the pixels one attention source adds over another land (the zone analysis of OAA-MAX).

OAA's claim is that accumulating the epochs' attention discovers *more of the object*. On a
generated benchmark every pixel of an (image, class) pair can be assigned to one zone:

====================  ==========================================================================
``regions``           the class's own discriminative regions (parts)
``body``              the rest of the class's object
``other_objects``     objects of other classes
``context``           context drawn with some classes (water, rails) outside any object
``band``              the rest within ``band_px`` pixels of the object (what a blurred blob adds)
``background``        everything else
====================  ==========================================================================

(precedence in that order). :func:`added_zone_counts` counts, per zone, the pixels inside
``A_new > t_new`` but outside ``A_ref > t_ref``: the share of them on ``regions`` + ``body`` is what
accumulation discovers; ``band`` is blur, ``context`` and ``background`` are false attention.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as Fn
from scipy.ndimage import distance_transform_edt

ZONES = ("regions", "body", "other_objects", "context", "band", "background")


def zone_map(mask: np.ndarray, part_index: np.ndarray, context_mask: np.ndarray | None, cls: int,
             band_px: float) -> np.ndarray:
    """``H x W`` zone index (into :data:`ZONES`) of every pixel for class ``cls`` (0-based; ``mask``
    holds ``cls + 1`` on its object, 0 background, 255 ignored, which counts as other objects)."""

    mask = np.asarray(mask)
    obj = mask == cls + 1
    z = np.full(mask.shape, ZONES.index("background"), dtype=np.uint8)
    dist = distance_transform_edt(~obj) if obj.any() else np.full(mask.shape, np.inf)
    z[dist <= band_px] = ZONES.index("band")
    if context_mask is not None:
        z[np.asarray(context_mask, bool)] = ZONES.index("context")
    z[(mask > 0) & ~obj] = ZONES.index("other_objects")
    z[obj] = ZONES.index("body")
    z[obj & (np.asarray(part_index) > 0)] = ZONES.index("regions")
    return z


def added_zone_counts(a_ref: torch.Tensor, a_new: torch.Tensor, zones: np.ndarray, t_ref: float,
                      t_new: float) -> np.ndarray:
    """Per zone, the number of pixels with ``a_new > t_new`` and not ``a_ref > t_ref`` (``H x W``
    maps at the zone map's size)."""
    added = ((a_new > t_new) & ~(a_ref > t_ref)).numpy()
    return np.bincount(zones[added].ravel(), minlength=len(ZONES)).astype(np.int64)


def zone_shares(counts: np.ndarray) -> dict:
    """Counts per zone -> shares of the total (``added_pixels`` = the total; NaN shares when 0)."""
    total = int(counts.sum())
    out = {z: (float(c) / total if total else float("nan")) for z, c in zip(ZONES, counts)}
    out["added_pixels"] = total
    return out


def zone_analysis(ref: dict, new: dict, renders, t_ref: float, t_new: float, band_px: float) -> dict:
    """Zone shares of the pixels ``new`` adds over ``ref`` over every (image, class) pair both sources
    hold (attention sources in the run format: ``image_ids``, ``slot_image``, ``slot_class``,
    ``maps``), with ``renders``: image id -> the rendered image (:class:`~wsss_lib.data.synthetic.RenderedImage`)
    or ``None`` to skip it. Also the recall of the body and of the regions under each source."""
    def slots(src: dict) -> dict:
        ids = src["image_ids"]
        return {(ids[int(i)], int(c)): s for s, (i, c) in enumerate(zip(src["slot_image"].tolist(),
                                                                        src["slot_class"].tolist()))}

    sr, sn = slots(ref), slots(new)
    counts = np.zeros(len(ZONES), np.int64)
    covered = {"ref": np.zeros(2), "new": np.zeros(2)}
    area = np.zeros(2)
    pairs = 0
    for key in sorted(set(sr) & set(sn)):
        r = renders(key[0])
        if r is None:
            continue
        z = zone_map(r.mask, r.part_index, r.context_mask, key[1], band_px)
        size = z.shape
        maps = {}
        for name, src, idx in (("ref", ref, sr[key]), ("new", new, sn[key])):
            maps[name] = Fn.interpolate(src["maps"][idx][None, None].float(), size=size, mode="bilinear",
                                        align_corners=False)[0, 0]
        counts += added_zone_counts(maps["ref"], maps["new"], z, t_ref, t_new)
        for j, zone in enumerate(("body", "regions")):
            inside = torch.from_numpy(z == ZONES.index(zone))
            area[j] += float(inside.sum())
            covered["ref"][j] += float(((maps["ref"] > t_ref) & inside).sum())
            covered["new"][j] += float(((maps["new"] > t_new) & inside).sum())
        pairs += 1
    out = zone_shares(counts)
    out.update(pairs=pairs, t_ref=t_ref, t_new=t_new, band_px=band_px)
    for name in ("ref", "new"):
        out[f"body_recall_{name}"] = float(covered[name][0] / area[0]) if area[0] else float("nan")
        out[f"regions_recall_{name}"] = float(covered[name][1] / area[1]) if area[1] else float("nan")
    return out


__all__ = ["ZONES", "added_zone_counts", "zone_analysis", "zone_map", "zone_shares"]
