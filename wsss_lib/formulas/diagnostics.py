"""Measured properties of the embedded benchmark under a trained model (docs/design.md section 4):
does the plain CAM concentrate on the discriminative part and miss the rest of the object?

The part masks are not in the VOC files; they are re-rendered from the benchmark's spec
(generation is deterministic), so this works only on a generated benchmark.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as Fn

from wsss_lib.data.synthetic import BenchmarkSpec, render_image
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
    from wsss_lib.formulas.drift import drift_summary, object_fractions, part_shares

    slot_image = store.slot_image.cpu().numpy()
    slot_class = store.slot_class.cpu().numpy()
    size = tuple(recorder.maps.shape[-2:])
    spec = embedded_spec(layout.root)
    images = sorted(set(slot_image.tolist()))
    masks, parts = {}, {}
    it = images
    if progress:
        from tqdm.auto import tqdm

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


def linear_probe_map(backbone, fit_images: torch.Tensor, fit_labels: np.ndarray, test_images: torch.Tensor,
                     test_labels: np.ndarray, ridge: float = 1.0) -> float:
    """How well a frozen backbone's features name the benchmark's classes: globally pooled features
    (eval mode) of uint8 ``N x 3 x H x W`` images, standardized on the fit images, a ridge regression
    (closed form, penalty ``ridge`` per fit image) onto the ``+-1`` image-level labels (``N x K``),
    scored by classification mAP on the test images. Deterministic and training-free, so a
    pretrained and a random backbone compare on the same footing."""
    from wsss_lib.formulas.evaluation import mean_average_precision
    from wsss_lib.models.pretrain import features

    with torch.no_grad():
        f_fit = features(backbone, fit_images).double()
        f_test = features(backbone, test_images).double()
    mu, sd = f_fit.mean(0), f_fit.std(0) + 1e-6
    x = torch.cat([(f_fit - mu) / sd, torch.ones(len(f_fit), 1, dtype=torch.float64)], 1)
    y = torch.from_numpy(np.where(np.asarray(fit_labels, bool), 1.0, -1.0))
    eye = torch.eye(x.shape[1], dtype=torch.float64)
    eye[-1, -1] = 0.0  # the bias is not penalized
    w = torch.linalg.solve(x.T @ x + ridge * len(x) * eye, x.T @ y)
    xt = torch.cat([(f_test - mu) / sd, torch.ones(len(f_test), 1, dtype=torch.float64)], 1)
    return mean_average_precision((xt @ w).numpy(), np.asarray(test_labels, bool))


def rendered_set(spec: BenchmarkSpec, split: str, n: int) -> tuple[torch.Tensor, np.ndarray]:
    """The first ``n`` images of ``split`` rendered from ``spec`` (no files) as ``n x 3 x H x W``
    uint8, and their image-level labels (``n x K`` bool)."""
    from wsss_lib.data.synthetic import CLASS_NAMES

    imgs, labels = [], np.zeros((n, len(CLASS_NAMES)), bool)
    for i in range(n):
        r = render_image(spec, split, i)
        imgs.append(torch.from_numpy(r.image).permute(2, 0, 1))
        present = np.unique(r.mask)
        labels[i, present[present > 0] - 1] = True
    return torch.stack(imgs), labels


def snapshot_epoch_miou(snapshots: dict, layout) -> list[float]:
    """CAM mIoU of each epoch's training-time attention on a run's snapshot images (``snapshots.pt``
    of a classifier run: ``maps`` ``E x n x K x h x w`` in the image frame, ``indices`` into
    ``layout``), best background threshold of the usual sweep per epoch; an epoch in which an
    image was not seen counts its maps as empty."""
    from wsss_lib.engine.common import dense_source
    from wsss_lib.formulas.evaluation import CAMEvaluator

    sub = layout.subset(snapshots["indices"])
    evaluator = CAMEvaluator(sub)
    out = []
    for e in range(snapshots["maps"].shape[0]):
        maps = snapshots["maps"][e].float() * snapshots["seen"][e].float()[:, None, None, None]
        out.append(float(evaluator.evaluate(dense_source(maps, sub))["miou"]))
    return out


def run_zone_analysis(run: str | Path, voc_root: str | Path, max_images: int = 500, band_cells: float = 2.0,
                      new: str = "oaa_max", ref: str = "cam") -> list[dict]:
    """:func:`wsss_lib.formulas.zones.zone_analysis` of a classifier run's ``new`` source over its
    ``ref`` source on the first ``max_images`` training images of a generated benchmark: once at each
    source's own best threshold (``evaluation.json``) and once at a common threshold of 0.5. The band
    is ``band_cells`` feature cells wide (the image side over the maps' side gives a cell's pixels)."""
    from wsss_lib.formulas.zones import zone_analysis
    from wsss_lib.runs.attention_io import load_attention

    spec = embedded_spec(voc_root)
    if spec is None:
        raise ValueError(f"{voc_root}: zones need the part and context masks of the embedded benchmark "
                         f"(no benchmark.json)")
    run = Path(run)
    ev = read_json(run / "evaluation.json")["sources"]
    for name in (ref, new):
        if name not in ev or not (run / "attention" / f"{name}.pt").exists():
            raise ValueError(f"{run}: no attention source {name!r} (sources: {sorted(ev)})")
    a_ref, a_new = (load_attention(run / "attention" / f"{n}.pt") for n in (ref, new))
    cell_px = spec.size / a_ref["maps"].shape[-1]
    keep = {iid for iid in a_ref["image_ids"] if iid[0] == "t" and int(iid[1:]) < max_images}

    from functools import lru_cache

    @lru_cache(maxsize=8)  # pairs come image by image: each image is rendered once
    def renders(iid: str):
        return render_image(spec, "train", int(iid[1:])) if iid in keep else None

    rows = []
    for label, t_ref, t_new in (("best thresholds", ev[ref]["best_threshold"], ev[new]["best_threshold"]),
                                ("common threshold 0.5", 0.5, 0.5)):
        rows.append({"thresholds": label, **zone_analysis(a_ref, a_new, renders, t_ref, t_new, band_cells * cell_px)})
    return rows
