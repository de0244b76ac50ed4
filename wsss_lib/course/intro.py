"""What the introduction notebook (``notebooks/00_introduction.ipynb``) computes and draws.

The introduction shows the problem on the embedded benchmark: samples with their labels and masks,
a classifier's class activation map (computed by hand in the notebook, checked against
:func:`wsss_lib.formulas.attention.attention_maps`), the pseudo labels a background threshold makes of it and
their mIoU, with a widget to move the threshold. The helpers here load a finished classifier run and
draw labelled figures; the maths stays in the notebook cells, where a student reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as Fn

from wsss_lib.data.transforms import normalize_images
from wsss_lib.figures.plots import attention_colorbar, class_legend_handles as class_legend, colorize_mask, overlay
from wsss_lib.formulas.diagnostics import embedded_spec
from wsss_lib.formulas.label_rules import threshold_labels
from wsss_lib.formulas.metrics import confusion_matrix, mean_iou
from wsss_lib.models.cam import CAMNet, build_cam_net
from wsss_lib.util.io import read_json, torch_load


def samples_figure(layout, indices: Sequence[int]) -> plt.Figure:
    """Images with their image-level labels (what training sees) over their masks (what it never
    sees, and what the result is scored against), with a class legend."""
    fig, axes = plt.subplots(2, len(indices), figsize=(1.9 * len(indices), 4.6), squeeze=False)
    seen, ignored = set(), False
    for j, i in enumerate(indices):
        names = [layout.class_names[c + 1] for c in np.flatnonzero(layout.labels[i])]
        mask = layout.load_mask(i)
        seen |= {int(v) for v in np.unique(mask) if v != 255}
        ignored |= bool((mask == 255).any())
        axes[0, j].imshow(layout.load_image(i))
        axes[0, j].set_title("labels: " + ", ".join(names), fontsize=7)
        axes[1, j].imshow(colorize_mask(mask))
        for ax in axes[:, j]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("image\n(training input)", fontsize=8)
    axes[1, 0].set_ylabel("mask\n(never seen in training)", fontsize=8)
    fig.legend(handles=class_legend(layout.class_names, seen, ignore=ignored), loc="lower center",
               ncol=min(len(seen) + 1, 7), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def load_classifier(run: str | Path, num_classes: int) -> CAMNet:
    """The trained network of a finished classifier run (its ``checkpoint.pt``), in eval mode, built
    as the run's resolved config describes it (backbone, output stride, width, head)."""
    run = Path(run)
    params = read_json(run / "params.json")["params"]
    model = build_cam_net(params["backbone"], num_classes, None, output_stride=params["output_stride"],
                          width=params.get("width", 32), head_convs=params.get("head_convs", 3))
    model.load_state_dict(torch_load(run / "checkpoint.pt")["model"])
    return model.eval()


def benchmark_description(voc_root: str | Path) -> str:
    """What the embedded benchmark at ``voc_root`` looks like, in Markdown, from its own spec (the
    version it was generated as): the objects, their discriminative regions, the context classes;
    a VOC folder gets one sentence."""

    spec = embedded_spec(voc_root)
    if spec is None:
        return "This is a VOC-layout folder of real images: its objects are what they are."
    parts = spec.parts_per_object if spec.version == "1" else 3
    regions = ("one small **part** at one end" if parts == 1 else f"**{parts} discriminative regions**")
    each = "" if parts == 1 else (", each enough on its own to tell the class" if spec.version != "1" else "")
    return (f"Benchmark version {spec.version}: {spec.n_train} training images of {spec.size} px. Every object is a "
            f"**body** drawn from one distribution for all classes, with {regions} whose colour and pattern name the "
            f"class{each}: the regions are what a classifier needs, the body is what a CAM is expected to miss. Two "
            "classes come with **context**: water under `barge`, rails under `tram`. Context is background in the "
            "masks, but it co-occurs with its class, so a classifier may use it as evidence.")


def image_batch(image: np.ndarray) -> torch.Tensor:
    """An ``H x W x 3`` uint8 image as the network's normalized ``1 x 3 x H x W`` input."""
    return normalize_images(torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)[None])


def image_attention(source: dict, i: int, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``(classes, maps)``: image ``i``'s present classes and their maps of a run's attention source,
    resized to ``shape`` (bilinear, as every stage reads them)."""
    slots = (source["slot_image"] == i).nonzero().flatten()
    classes = source["slot_class"][slots].numpy()
    if not len(slots):
        return classes, np.zeros((0, *shape), np.float32)
    maps = Fn.interpolate(source["maps"][slots][None].float(), size=shape, mode="bilinear", align_corners=False)
    return classes, maps[0].numpy()


def threshold_sweep(layout, source: dict, indices: Sequence[int], thresholds: Sequence[float]) -> np.ndarray:
    """mIoU of threshold pseudo labels (background where every class's attention is below the
    threshold) over the images ``indices``, one value per threshold."""
    cms = np.zeros((len(thresholds), layout.num_classes, layout.num_classes), np.int64)
    for i in indices:
        mask = np.array(layout.load_mask(i))  # a writable copy (the loader's may be read-only)
        classes, att = image_attention(source, i, mask.shape)
        for k, t in enumerate(thresholds):
            cms[k] += confusion_matrix(threshold_labels(att, classes, t), mask, layout.num_classes)
    return np.array([mean_iou(cm) for cm in cms])


def cam_figure(image: np.ndarray, cam: np.ndarray, mask: np.ndarray, class_names: Sequence[str],
               title: str) -> plt.Figure:
    """The image, its class activation map over it (with a colour bar), and the ground truth."""
    fig, axes = plt.subplots(1, 3, figsize=(8.4, 3.0))
    axes[0].imshow(image)
    axes[0].set_title("image", fontsize=9)
    axes[1].imshow(overlay(image, cam))
    axes[1].set_title(title, fontsize=9)
    axes[2].imshow(colorize_mask(mask))
    axes[2].set_title("ground truth", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    attention_colorbar(fig, "attention A_c (eq. 2)", ax=axes[1])
    values = {int(v) for v in np.unique(mask) if v != 255}
    axes[2].legend(handles=class_legend(class_names, values, ignore=bool((mask == 255).any())), fontsize=7,
                   loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def threshold_explorer(layout, source: dict, indices: Sequence[int], thresholds: Sequence[float],
                       start: int | None = None):
    """An ipywidgets explorer: a slider for the background threshold and a menu of images; shows the
    image's CAM, its pseudo label at that threshold, the ground truth, and the set's mIoU curve.
    ``start``: the image the menu opens on (default: the first of ``indices``)."""
    import ipywidgets as widgets  # lazy: heavy: only where a widget is drawn
    from IPython.display import display  # lazy: only inside a notebook kernel

    curve = threshold_sweep(layout, source, indices, thresholds)
    slider = widgets.FloatSlider(value=0.5, min=float(min(thresholds)), max=float(max(thresholds)), step=0.05,
                                 description="threshold", continuous_update=False, readout_format=".2f")
    menu = widgets.Dropdown(options=[(layout.ids[i], i) for i in indices],
                            value=start if start in indices else indices[0], description="image")
    out = widgets.Output()

    def draw(*_):
        i, t = menu.value, slider.value
        image, mask = layout.load_image(i), np.array(layout.load_mask(i))
        classes, att = image_attention(source, i, mask.shape)
        label = threshold_labels(att, classes, t)
        cm = confusion_matrix(label, mask, layout.num_classes)
        fig, axes = plt.subplots(1, 4, figsize=(12, 3.0), gridspec_kw={"width_ratios": [1, 1, 1, 1.4]})
        axes[0].imshow(overlay(image, att.max(0) if len(att) else np.zeros(mask.shape)))
        axes[0].set_title("CAM, all present classes (max)", fontsize=8)
        attention_colorbar(fig, "attention", ax=axes[0], fontsize=7)
        axes[1].imshow(colorize_mask(label))
        axes[1].set_title(f"pseudo label at threshold {t:.2f}", fontsize=8)
        axes[2].imshow(colorize_mask(mask))
        axes[2].set_title(f"ground truth (this image's mIoU {mean_iou(cm):.3f})", fontsize=8)
        for ax in axes[:3]:
            ax.set_xticks([])
            ax.set_yticks([])
        values = {int(v) for v in np.unique(np.concatenate([label.ravel(), mask.ravel()])) if v != 255}
        axes[2].legend(handles=class_legend(layout.class_names, values, ignore=bool((mask == 255).any())),
                       fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=2, frameon=False)
        axes[3].plot(thresholds, curve, marker=".")
        k = int(np.argmin(np.abs(np.asarray(thresholds) - t)))
        axes[3].plot([thresholds[k]], [curve[k]], "o", color="C3", label=f"here: {curve[k]:.3f}")
        axes[3].set_xlabel("background threshold")
        axes[3].set_ylabel(f"mIoU over {len(indices)} images")
        axes[3].grid(alpha=0.3)
        axes[3].legend(fontsize=7)
        fig.tight_layout()
        with out:
            out.clear_output(wait=True)
            display(fig)
        plt.close(fig)

    slider.observe(draw, names="value")
    menu.observe(draw, names="value")
    draw()
    return widgets.VBox([widgets.HBox([slider, menu]), out]), curve


__all__ = ["benchmark_description", "cam_figure", "image_attention", "image_batch", "load_classifier",
           "samples_figure", "threshold_explorer", "threshold_sweep"]
