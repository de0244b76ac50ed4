"""Object geometry of a benchmark in the units the classifier sees: feature cells.

OAA's accumulation helps when the attention can move between regions of an object *and* the object
is large enough in feature cells that reaching a new region means more than blurring the edge of
the last one. These measures need no trained model: they read the rendered masks of the embedded
benchmark (instance, part and context masks come from the renderer, which is deterministic) and
compare them with the VOC figures of :data:`VOC_REFERENCE`.

Per visible object instance (:func:`instance_table`):

- ``long_side_cells``: the long side of the instance's bounding box, in cells of the network's
  output stride; ``area_cells``: its pixels / stride^2;
- ``regions``: how many discriminative regions (parts) are visible on it; ``region_share``: their
  pixels / the instance's pixels;
- ``rf_ratio``: the receptive field of one output cell / the long side (both in pixels);
- ``with_context``: whether the image has the context drawn with its class (water, rails).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from wsss_lib.data.spec import CLASS_NAMES, CONTEXT_OF_CLASS, BenchmarkSpec
from wsss_lib.data.synthetic import render_image

#: VOC 2012 figures for the OAA setting (OAA-PyTorch resizes the short side to 224 and runs VGG-16
#: at output stride 8; the classifier's receptive field with its three extra 3x3 layers is 252 px,
#: :func:`wsss_lib.models.backbones.receptive_field`). The per-instance sizes are estimates derived
#: from a third-party statistics table of the VOC 2012 segmentation set, not measured here (no VOC
#: data on this machine): medians and quartiles of the object's long side and area in cells, and the
#: pixel-weighted medians (each instance weighted by its area).
VOC_REFERENCE = {
    "long_side_cells": {"median": 14.0, "q25": 7.0, "q75": 23.0, "pixel_weighted_median": 27.0},
    "area_cells": {"median": 50.0, "pixel_weighted_median": 273.0},
    "rf_ratio": {"median": 2.2},
    "source": "estimates from a third-party statistics table of VOC 2012 segmentation instances "
              "(short side 224 px, output stride 8); not verified against the data",
}


def instance_table(spec: BenchmarkSpec, stride: int, receptive_field: int, n_images: int = 500,
                   split: str = "train") -> pd.DataFrame:
    """One row per visible object instance of the first ``n_images`` images of ``split`` (see the
    module docstring for the columns)."""
    if stride < 1 or receptive_field < 1:
        raise ValueError(f"stride and receptive_field must be >= 1, got {stride} and {receptive_field}")
    ctx_of = {c: name for c, name in CONTEXT_OF_CLASS.items()}
    rows = []
    for i in range(min(n_images, spec.n_train if split == "train" else spec.n_val)):
        r = render_image(spec, split, i)
        for j, c in enumerate(r.objects):
            obj = r.instance == j + 1
            n = int(obj.sum())
            if n == 0:
                continue
            ys, xs = np.nonzero(obj)
            long_px = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)
            parts = r.part_index[obj]
            visible = [p for p in (1, 2, 3) if (parts == p).any()]
            rows.append({"image": i, "class": CLASS_NAMES[c], "long_side_px": int(long_px),
                         "long_side_cells": long_px / stride, "area_cells": n / stride ** 2,
                         "regions": len(visible), "region_share": float((parts > 0).sum()) / n,
                         "rf_ratio": receptive_field / long_px,
                         "with_context": c in ctx_of and ctx_of[c] in r.contexts})
    return pd.DataFrame(rows)


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The value at which the cumulative weight (values sorted) first reaches half the total."""
    order = np.argsort(values)
    v, w = np.asarray(values, float)[order], np.asarray(weights, float)[order]
    cum = np.cumsum(w)
    return float(v[np.searchsorted(cum, 0.5 * cum[-1])])


def geometry_summary(table: pd.DataFrame) -> dict:
    """Medians and quartiles of an :func:`instance_table`, with the pixel-weighted medians and the
    distribution of visible regions per object."""
    if table.empty:
        raise ValueError("geometry_summary: the instance table is empty (no visible object)")
    q = lambda col, p: float(np.percentile(table[col], p))  # noqa: E731
    regions = table["regions"].value_counts(normalize=True).sort_index()
    return {
        "instances": int(len(table)),
        "long_side_cells": {"median": q("long_side_cells", 50), "q25": q("long_side_cells", 25),
                            "q75": q("long_side_cells", 75),
                            "pixel_weighted_median": weighted_median(table["long_side_cells"], table["area_cells"])},
        "area_cells": {"median": q("area_cells", 50), "q25": q("area_cells", 25), "q75": q("area_cells", 75),
                       "pixel_weighted_median": weighted_median(table["area_cells"], table["area_cells"])},
        "rf_ratio": {"median": q("rf_ratio", 50)},
        "regions_share": {int(k): float(v) for k, v in regions.items()},
        "region_area_share": {"median": q("region_share", 50)},
        "with_context_share": float(table["with_context"].mean()),
    }


def geometry_row(name: str, summary: dict) -> dict:
    """One row of the property table (a candidate spec, or VOC's reference figures)."""
    ls, ar = summary["long_side_cells"], summary["area_cells"]
    row = {"setting": name,
           "long side, cells (median [IQR])": f"{ls['median']:.1f} [{ls['q25']:.1f}-{ls['q75']:.1f}]",
           "long side, pixel-weighted median": f"{ls['pixel_weighted_median']:.1f}",
           "area, cells (median)": f"{ar['median']:.1f}",
           "area, pixel-weighted median": f"{ar['pixel_weighted_median']:.1f}",
           "receptive field / long side (median)": f"{summary['rf_ratio']['median']:.2f}"}
    if "regions_share" in summary:
        row["visible regions per object"] = ", ".join(f"{k}: {v:.0%}" for k, v in summary["regions_share"].items())
    return row


def voc_row() -> dict:
    ref = VOC_REFERENCE
    return {"setting": "VOC 2012 (OAA setting; estimates)",
            "long side, cells (median [IQR])": f"{ref['long_side_cells']['median']:.0f} "
                                               f"[{ref['long_side_cells']['q25']:.0f}-{ref['long_side_cells']['q75']:.0f}]",
            "long side, pixel-weighted median": f"{ref['long_side_cells']['pixel_weighted_median']:.0f}",
            "area, cells (median)": f"{ref['area_cells']['median']:.0f}",
            "area, pixel-weighted median": f"{ref['area_cells']['pixel_weighted_median']:.0f}",
            "receptive field / long side (median)": f"{ref['rf_ratio']['median']:.1f}",
            "visible regions per object": "several (heads, wheels, wings, ...)"}


__all__ = ["VOC_REFERENCE", "geometry_row", "geometry_summary", "instance_table", "voc_row", "weighted_median"]
