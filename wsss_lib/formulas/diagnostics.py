"""Measured properties of the embedded benchmark under a trained model (docs/design.md section 4):
does the plain CAM concentrate on the discriminative part and miss the rest of the object?

The part masks are not in the VOC files; they are re-rendered from the benchmark's spec
(generation is deterministic), so this works only on a generated benchmark.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as Fn
from tqdm.auto import tqdm

from wsss_lib.data.spec import BenchmarkSpec
from wsss_lib.data.synthetic import render_image
from wsss_lib.formulas.drift import drift_summary, object_fractions, part_shares
from wsss_lib.formulas.zones import zone_analysis
from wsss_lib.util.io import read_json


def embedded_spec(voc_root: str | Path) -> BenchmarkSpec | None:
    """The spec of a generated benchmark (``None`` for real VOC data)."""
    bj = Path(voc_root) / "benchmark.json"
    if not bj.exists():
        return None
    meta = read_json(bj)
    return BenchmarkSpec(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in meta["spec"].items()})


def part_mass(source: dict, voc_root: str | Path, threshold: float = 0.3, max_images: int = 500) -> dict:
    """For each (image, class) map on the first ``max_images`` training images:

    - ``part_mass_share``: attention mass on the class's visible part / mass on its whole object;
    - ``part_area_share``: part area / object area (what a uniform map over the object would give);
    - ``object_precision`` / ``object_recall`` of ``A > threshold`` against the class's object pixels.
    """
    spec = embedded_spec(voc_root)
    if spec is None:
        raise ValueError(f"{voc_root}: part masks exist only for the embedded benchmark (no benchmark.json)")
    ids = source["image_ids"]
    mass, area, prec, rec = [], [], [], []
    for s in range(source["maps"].shape[0]):
        i = int(source["slot_image"][s])
        if i >= max_images:
            continue
        iid = ids[i]
        if iid[0] != "t":
            raise ValueError(f"image id {iid!r} is not a training image of the embedded benchmark")
        r = render_image(spec, "train", int(iid[1:]))
        c = int(source["slot_class"][s]) + 1
        obj = torch.from_numpy(r.mask == c)
        part = torch.from_numpy(r.part_mask) & obj
        if not obj.any():
            continue
        a = Fn.interpolate(source["maps"][s][None, None].float(), size=obj.shape, mode="bilinear",
                           align_corners=False)[0, 0].clamp_min(0)
        tot = float(a[obj].sum())
        if tot > 0:
            mass.append(float(a[part].sum()) / tot)
            area.append(float(part.sum()) / float(obj.sum()))
        on = a > threshold
        if on.any():
            prec.append(float((on & obj).sum()) / float(on.sum()))
        rec.append(float((on & obj).sum()) / float(obj.sum()))
    def mean(xs: list[float]) -> float:
        return float(np.mean(xs)) if xs else float("nan")  # e.g. an untrained quick-mode model

    return {"part_mass_share": mean(mass), "part_area_share": mean(area), "object_precision": mean(prec),
            "object_recall": mean(rec), "threshold": threshold, "maps": len(rec)}


def drift_of_recording(recorder, store, layout, threshold: float = 0.5, progress: bool = False) -> dict:
    """:func:`wsss_lib.formulas.drift.drift_summary` of a classifier run's :class:`~wsss_lib.formulas.drift.DriftRecorder`,
    with the discovery curve when the training masks exist (embedded benchmark, VOC with
    ``SegmentationClass`` for the training ids) and mass per part on the embedded benchmark."""

    slot_image = store.slot_image.cpu().numpy()
    slot_class = store.slot_class.cpu().numpy()
    size = tuple(recorder.maps.shape[-2:])
    spec = embedded_spec(layout.root)
    images = sorted(set(slot_image.tolist()))
    masks, parts = {}, {}
    it = images
    if progress:

        it = tqdm(images, desc="drift: object masks", leave=False)
    for i in it:
        if spec is not None:
            r = render_image(spec, "train", int(layout.ids[i][1:]))
            masks[i], parts[i] = r.mask, r.part_index
        else:
            try:
                masks[i] = layout.load_mask(i)
            except Exception:  # no training masks (e.g. image-level labels only): no discovery curve
                masks = {}
                break
    frac = pm = None
    if masks and all(masks.get(i) is not None for i in images):
        frac = object_fractions([masks[i] for i in slot_image], slot_class, size)
    if parts:
        regions = 3 if spec.version == "2" else 2
        pm = torch.stack([part_shares(parts[i], masks[i], c, size, regions) for i, c in zip(slot_image, slot_class)])
    return drift_summary(recorder.maps, recorder.seen, frac, threshold, pm)


def zone_rows(ref: dict, new: dict, t_ref: float, t_new: float, voc_root: str | Path, max_images: int = 500,
              band_cells: float = 2.0) -> list[dict]:
    """:func:`wsss_lib.formulas.zones.zone_analysis` of the attention source ``new`` over ``ref``
    (run-format sources, e.g. a classifier run's OAA-MAX over its CAM) on the first ``max_images``
    training images of a generated benchmark: once at the sources' own best thresholds ``t_ref``,
    ``t_new`` and once at a common threshold of 0.5. The band is ``band_cells`` feature cells wide
    (the image side over the maps' side gives a cell's pixels)."""

    spec = embedded_spec(voc_root)
    if spec is None:
        raise ValueError(f"{voc_root}: zones need the part and context masks of the embedded benchmark "
                         f"(no benchmark.json)")
    cell_px = spec.size / ref["maps"].shape[-1]
    keep = {iid for iid in ref["image_ids"] if iid[0] == "t" and int(iid[1:]) < max_images}

    @lru_cache(maxsize=8)  # pairs come image by image: each image is rendered once
    def renders(iid: str):
        return render_image(spec, "train", int(iid[1:])) if iid in keep else None

    return [{"thresholds": label, **zone_analysis(ref, new, renders, a, b, band_cells * cell_px)}
            for label, a, b in (("best thresholds", t_ref, t_new), ("common threshold 0.5", 0.5, 0.5))]
