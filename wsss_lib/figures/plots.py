"""Figures (matplotlib): masks in VOC colours, benchmark samples, attention grids."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt  # matplotlib picks a headless backend when there is no display
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.patches import Patch

from wsss_lib.data.spec import voc_colormap
from wsss_lib.util.io import atomic_path

_CMAP = voc_colormap()


def colorize_mask(mask: np.ndarray) -> np.ndarray:
    """Label map ``H x W`` to ``H x W x 3`` uint8 in the VOC palette (255 shows as cream)."""
    return _CMAP[np.asarray(mask, dtype=np.uint8)]


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.55, cmap: str = "jet") -> np.ndarray:
    """Blend a ``[0, 1]`` heat map over an RGB uint8 image."""
    h = np.clip(np.asarray(heat, dtype=np.float64), 0, 1)
    rgb = plt.get_cmap(cmap)(h)[..., :3] * 255
    return np.clip((1 - alpha) * image + alpha * rgb, 0, 255).astype(np.uint8)


def attention_colorbar(fig: "plt.Figure", label: str = "attention (OAA eq. 2)", ax=None,
                       rect: tuple = (0.945, 0.2, 0.012, 0.6), fontsize: int = 8):
    """A 0-1 colour bar of the attention overlays (jet): beside ``ax``, or in its own axes at ``rect``."""

    sm = ScalarMappable(Normalize(0, 1), cmap="jet")
    cb = fig.colorbar(sm, ax=ax, fraction=0.046, pad=0.02) if ax is not None else fig.colorbar(sm, cax=fig.add_axes(rect))
    cb.set_label(label, fontsize=fontsize)
    cb.ax.tick_params(labelsize=fontsize)
    return cb


def class_legend_handles(class_names: Sequence[str], values, ignore: bool = False, ignore_label: str = "ignored (255)"):
    """Legend patches in the VOC palette for the label ``values`` (0 = background)."""

    handles = [Patch(color=_CMAP[v] / 255.0, label=class_names[v]) for v in sorted({int(v) for v in values})]
    if ignore:
        handles.append(Patch(facecolor="white", edgecolor="0.5", label=ignore_label))
    return handles


def add_class_legend(fig: "plt.Figure", class_names: Sequence[str], values, ignore: bool = False,
                     title: str = "label colours", fontsize: int = 8, ignore_label: str = "ignored (255)",
                     above_caption: bool = False) -> None:
    """One legend under the figure for every label map in it (leave room: ``tight_layout(rect=(0, 0.1, ...))``);
    ``above_caption``: raised by 0.4 inch, clear of a caption line printed at the figure's foot."""
    handles = class_legend_handles(class_names, values, ignore, ignore_label)
    y = 0.4 / fig.get_figheight() if above_caption else 0.0
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, y), ncol=min(len(handles), 7),
               fontsize=fontsize, frameon=False, title=title, title_fontsize=fontsize)


def save_figure(fig: "plt.Figure", path: str | os.PathLike, dpi: int = 110) -> Path:
    """Save atomically as PNG and close the figure."""
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    plt.close(fig)
    return Path(path)


def samples_figure(images: Sequence[np.ndarray], masks: Sequence[np.ndarray], titles: Sequence[str],
                   ncols: int = 6) -> "plt.Figure":
    """Images with their ground-truth masks underneath (two rows per row of samples)."""
    n = len(images)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(2 * nrows, ncols, figsize=(1.9 * ncols, 2.0 * 2 * nrows))
    axes = np.atleast_2d(axes)
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(n):
        r, c = 2 * (i // ncols), i % ncols
        axes[r, c].imshow(images[i])
        axes[r, c].set_title(titles[i], fontsize=7)
        axes[r + 1, c].imshow(colorize_mask(masks[i]))
    fig.tight_layout()
    return fig


def _first_class(labels_row: np.ndarray) -> int:
    nz = np.flatnonzero(labels_row)
    return int(nz[0]) if nz.size else 0


def _up(m: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    import torch  # lazy: heavy: this module stays importable without torch
    import torch.nn.functional as Fn  # lazy: heavy: this module stays importable without torch

    t = torch.as_tensor(np.asarray(m, dtype=np.float32))[None, None]
    return Fn.interpolate(t, size=shape, mode="bilinear", align_corners=False)[0, 0].numpy()


def sources_figure(layout, sources: dict[str, dict], indices: Sequence, rule: str = "") -> "plt.Figure":
    """Rows of images: the image, each attention source's map of one present class (named at the
    row's left), and the ground truth; a colour bar for the attention and a legend for the classes.
    ``sources``: title -> source (name them with :func:`wsss_lib.stages.display_name`); ``indices``: image indices (each row shows its first present class) or ``(image, class)`` pairs
    (:func:`wsss_lib.figures.picks.detected_picks`); ``rule``: how they were chosen, printed under."""
    names = list(sources)
    ncol = len(names) + 2
    fig, axes = plt.subplots(len(indices), ncol, figsize=(1.8 * ncol + 0.9, 1.8 * len(indices) + 0.9), squeeze=False)
    class_names = layout.class_names
    seen_classes = {0}
    ignored = False
    for r, pick in enumerate(indices):
        i, c = (int(pick[0]), int(pick[1])) if isinstance(pick, (tuple, list)) else (int(pick), None)
        img = layout.load_image(i)
        c = _first_class(layout.labels[i]) if c is None else c
        panels, titles = [img], ["image"]
        for name in names:
            src = sources[name]
            sel = ((src["slot_image"] == i) & (src["slot_class"] == c)).nonzero().flatten()
            m = src["maps"][int(sel[0])].float().numpy() if sel.numel() else np.zeros((2, 2))
            panels.append(overlay(img, _up(m, img.shape[:2])))
            titles.append(name)
        mask = layout.load_mask(i)
        seen_classes |= {int(v) for v in np.unique(mask) if v != 255}
        ignored |= bool((mask == 255).any())
        panels.append(colorize_mask(mask))
        titles.append("ground truth")
        for ax, p, t in zip(axes[r], panels, titles):
            ax.imshow(p)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(t, fontsize=8)
        axes[r, 0].set_ylabel(f"{layout.ids[i]}\nclass: {class_names[c + 1]}", fontsize=7)
    bottom = 0.08 + (0.05 if rule else 0.0)
    fig.tight_layout(rect=(0, bottom, 0.93, 1))
    attention_colorbar(fig, "attention (eq. 2), class named at left")
    add_class_legend(fig, class_names, seen_classes, ignore=ignored, title="ground-truth colours",
                     ignore_label="ignore (boundary)", above_caption=bool(rule))
    if rule:
        fig.text(0.5, 0.005, rule, ha="center", va="bottom", fontsize=6.5, wrap=True)
    return fig


def threshold_curves_figure(evaluation: dict, title: str = "CAM mIoU vs background threshold") -> "plt.Figure":
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for name, ev in evaluation.items():
        ax.plot(ev["thresholds"], ev["miou_curve"], marker=".", label=f"{name} (best {ev['miou']:.3f} @ {ev['best_threshold']:.2f})")
    ax.set_xlabel("background threshold")
    ax.set_ylabel("mIoU (train)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _show_label(ax, lab: np.ndarray) -> None:
    rgb = colorize_mask(lab).copy()
    rgb[np.asarray(lab) == 255] = 255  # ignore: white
    ax.imshow(rgb)


def side_by_side_figure(columns: dict[str, Sequence[np.ndarray]], row_titles: Sequence[str] = (),
                        title: str = "", class_names: Sequence[str] = ()) -> "plt.Figure":
    """One row per image, one column per entry of ``columns``: RGB images (``H x W x 3``) as they
    are, label maps (``H x W``) in the VOC palette with ignore (255) in white; with ``class_names``,
    a legend of the classes the label maps show."""
    names = list(columns)
    n = len(columns[names[0]])
    fig, axes = plt.subplots(n, len(names), figsize=(1.9 * len(names), 1.9 * n + (0.7 if class_names else 0)),
                             squeeze=False)
    values, ignored = set(), False
    for r in range(n):
        for c, name in enumerate(names):
            ax, a = axes[r, c], np.asarray(columns[name][r])
            if a.ndim != 3:
                values |= {int(v) for v in np.unique(a) if v != 255}
                ignored |= bool((a == 255).any())
            ax.imshow(a) if a.ndim == 3 else _show_label(ax, a)
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=9)
            if c == 0 and r < len(row_titles):
                ax.set_ylabel(row_titles[r], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    if class_names and values:
        fig.tight_layout(rect=(0, 0.6 / fig.get_size_inches()[1], 1, 1))
        add_class_legend(fig, class_names, values, ignore=ignored, ignore_label="ignored (255)")
    else:
        fig.tight_layout()
    return fig


def cues_figure(image: np.ndarray, cues: dict, saliency: np.ndarray, gt: np.ndarray, title: str = "",
                class_names: Sequence[str] = ()) -> "plt.Figure":
    """OAA section 4 on one image: the object cue (attention, with its colour bar), the background
    cue (saliency), where they conflict, the resulting pseudo label (white = ignored) and the ground
    truth; with ``class_names``, a legend of the label colours."""
    fig, axes = plt.subplots(1, 6, figsize=(13.5, 3.1 if class_names else 2.6))
    axes[0].imshow(image)
    axes[0].set_title("image")
    axes[1].imshow(overlay(image, cues["attention"]))
    axes[1].set_title("object cue: attention")
    axes[2].imshow(saliency, cmap="gray", vmin=0, vmax=1)
    axes[2].set_title("background cue: saliency")
    conf = np.zeros((*gt.shape, 3), dtype=np.uint8) + 235
    conf[cues["background"]] = (120, 120, 120)
    conf[cues["object"] > 0] = (60, 160, 60)
    conf[cues["conflict"]] = (220, 40, 40)
    axes[3].imshow(conf)
    axes[3].set_title("cues: object (green), bg (grey),\nconflict -> ignored (red)", fontsize=8)
    _show_label(axes[4], cues["labels"])
    axes[4].set_title("pseudo label (white: 255)")
    _show_label(axes[5], gt)
    axes[5].set_title("ground truth")
    for ax in axes:
        ax.set_xticks([]), ax.set_yticks([])
    attention_colorbar(fig, "attention", ax=axes[1], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    if class_names:
        labels = np.concatenate([np.ravel(cues["labels"]), np.ravel(gt)])
        fig.tight_layout(rect=(0, 0.16, 1, 1))
        add_class_legend(fig, class_names, [v for v in np.unique(labels) if v != 255], ignore=bool((labels == 255).any()))
    else:
        fig.tight_layout()
    return fig


def confusion_figure(cm: np.ndarray, class_names: Sequence[str], title: str = "confusion matrix") -> "plt.Figure":
    """Row-normalized confusion matrix (rows: ground truth, columns: prediction), with the share of
    each ground-truth class in every cell."""
    cm = np.asarray(cm, dtype=np.float64)
    rows = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * k, 0.8 + 0.5 * k))
    im = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    for g in range(k):
        for p in range(k):
            if rows[g, p] >= 0.01:
                ax.text(p, g, f"{rows[g, p]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if rows[g, p] > 0.5 else "black")
    ax.set_xticks(range(k), class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), class_names, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("ground-truth class")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the ground-truth class's pixels")
    fig.tight_layout()
    return fig


