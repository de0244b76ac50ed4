"""Figures (matplotlib): masks in VOC colours, benchmark samples, attention grids."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt  # matplotlib picks a headless backend when there is no display
import numpy as np

from wsss_lib.formulas.accumulation import FUSION_SOURCES
from wsss_lib.data.synthetic import voc_colormap
from wsss_lib.util.io import atomic_path
from wsss_lib.figures.picks import PICK_RULE, detected_snapshot_rows

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
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    sm = ScalarMappable(Normalize(0, 1), cmap="jet")
    cb = fig.colorbar(sm, ax=ax, fraction=0.046, pad=0.02) if ax is not None else fig.colorbar(sm, cax=fig.add_axes(rect))
    cb.set_label(label, fontsize=fontsize)
    cb.ax.tick_params(labelsize=fontsize)
    return cb


def class_legend_handles(class_names: Sequence[str], values, ignore: bool = False, ignore_label: str = "ignored (255)"):
    """Legend patches in the VOC palette for the label ``values`` (0 = background)."""
    from matplotlib.patches import Patch

    handles = [Patch(color=_CMAP[v] / 255.0, label=class_names[v]) for v in sorted({int(v) for v in values})]
    if ignore:
        handles.append(Patch(facecolor="white", edgecolor="0.5", label=ignore_label))
    return handles


def add_class_legend(fig: "plt.Figure", class_names: Sequence[str], values, ignore: bool = False,
                     title: str = "label colours", fontsize: int = 8, ignore_label: str = "ignored (255)") -> None:
    """One legend under the figure for every label map in it (leave room: ``tight_layout(rect=(0, 0.1, ...))``)."""
    handles = class_legend_handles(class_names, values, ignore, ignore_label)
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 7), fontsize=fontsize, frameon=False,
               title=title, title_fontsize=fontsize)


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
    import torch
    import torch.nn.functional as Fn

    t = torch.as_tensor(np.asarray(m, dtype=np.float32))[None, None]
    return Fn.interpolate(t, size=shape, mode="bilinear", align_corners=False)[0, 0].numpy()


def attention_evolution_figure(snapshots: dict, layout, epochs: Sequence[int] | None = None,
                               rows: Sequence[int] | None = None, rule: str = "") -> "plt.Figure":
    """OAA Figure 1 analogue: image, attention at several epochs, OAA-MAX, OAA-AVE, final CAM, GT.

    ``snapshots``: the dict saved as ``snapshots.pt`` by the classifier stage."""
    maps = snapshots["maps"].float().numpy()  # E x n x K x h x w
    n_ep = maps.shape[0]
    epochs = list(epochs) if epochs is not None else sorted(set(np.linspace(0, n_ep - 1, min(4, n_ep)).round().astype(int)))
    rows = list(rows) if rows is not None else list(range(min(4, maps.shape[1])))
    cols = ["image"] + [f"epoch {e + 1}" for e in epochs] + ["OAA-MAX", "OAA-AVE", "final CAM", "ground truth"]
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(1.7 * len(cols) + 0.8, 1.8 * len(rows) + 0.8), squeeze=False)
    names = layout.class_names[1:]
    seen = {0}
    ignored = False
    for r, j in enumerate(rows):
        i = snapshots["indices"][j]
        img = layout.load_image(i)
        c = _first_class(layout.labels[i])
        shape = img.shape[:2]
        panels = [img] + [overlay(img, _up(maps[e, j, c], shape)) for e in epochs]
        panels += [overlay(img, _up(snapshots[k][j, c].float().numpy(), shape)) for k in ("oaa_max", "oaa_ave")]
        panels += [overlay(img, _up(snapshots["final_cam"][j, c].float().numpy(), shape))]
        mask = layout.load_mask(i)
        panels += [colorize_mask(mask) if mask is not None else np.zeros_like(img)]
        if mask is not None:
            seen |= {int(v) for v in np.unique(mask) if v != 255}
            ignored |= bool((mask == 255).any())
        for a, (ax, p) in enumerate(zip(axes[r], panels)):
            ax.imshow(p)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(cols[a], fontsize=8)
        axes[r, 0].set_ylabel(f"{layout.ids[i]}\n{names[c]}", fontsize=7)
    bottom = 0.1 + (0.05 if rule else 0.0)
    fig.tight_layout(rect=(0, bottom, 0.93, 1))
    attention_colorbar(fig, "attention, class named at left")
    add_class_legend(fig, layout.class_names, seen, ignore=ignored, title="ground-truth colours",
                     ignore_label="ignore (boundary)")
    if rule:
        fig.text(0.5, 0.005, rule, ha="center", va="bottom", fontsize=6.5, wrap=True)
    return fig


def discovery_pick(snapshots: dict, layout, threshold: float = 0.5) -> int:
    """The snapshot row whose object the running MAX covers most beyond its best single epoch (the
    clearest lesson of the discovery figure); row 0 when nothing is covered."""
    maps = snapshots["maps"].float().numpy()
    best, pick = -1.0, 0
    for j, i in enumerate(snapshots["indices"]):
        mask = layout.load_mask(i)
        if mask is None:
            continue
        c = _first_class(layout.labels[i])
        obj = mask == c + 1
        if not obj.any():
            continue
        ups = np.stack([_up(maps[e, j, c], mask.shape) for e in range(maps.shape[0])]) > threshold
        single = max(float((u & obj).sum()) for u in ups)
        gain = float((ups.any(0) & obj).sum()) - single
        if gain > best:
            best, pick = gain, j
    return pick


def discovery_figure(snapshots: dict, layout, row: int | None = None, summary: dict | None = None,
                     threshold: float = 0.5, max_epochs: int = 8) -> "plt.Figure":
    """Why accumulation helps: one training image's attention epoch by epoch (top row),
    the running element-wise MAX of those maps (OAA eq. 5 with every epoch accepted, bottom row),
    the object's outline on both, and the discovery curve: the share of the object inside
    ``MAX > threshold`` after each epoch, next to the share one epoch's map covers, for this image
    and (``summary``, the classifier run's ``drift.json``) averaged over every training pair."""
    maps = snapshots["maps"].float().numpy()  # E x n x K x h x w
    n_ep = maps.shape[0]
    row = discovery_pick(snapshots, layout, threshold) if row is None else row
    i = snapshots["indices"][row]
    img, mask = layout.load_image(i), layout.load_mask(i)
    c = _first_class(layout.labels[i])
    obj = (mask == c + 1) if mask is not None else np.zeros(img.shape[:2], bool)
    ups = np.stack([_up(maps[e, row, c], img.shape[:2]) for e in range(n_ep)])
    acc = np.maximum.accumulate(ups, axis=0)
    shown = sorted(set(np.linspace(0, n_ep - 1, min(max_epochs, n_ep)).round().astype(int)))
    fig = plt.figure(figsize=(1.55 * len(shown) + 3.6, 3.6))
    gs = fig.add_gridspec(2, len(shown) + 2, width_ratios=[1] * len(shown) + [0.15, 2.2])
    for k, e in enumerate(shown):
        for r, (m, name) in enumerate(((ups[e], f"epoch {e + 1}"), (acc[e], f"MAX of 1..{e + 1}"))):
            ax = fig.add_subplot(gs[r, k])
            ax.imshow(overlay(img, m))
            if obj.any():
                ax.contour(obj, levels=[0.5], colors="white", linewidths=0.7)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(name, fontsize=7)
    ax = fig.add_subplot(gs[:, -1])
    ep = np.arange(1, n_ep + 1)
    if obj.any():
        tot = obj.sum()
        ax.plot(ep, [((a > threshold) & obj).sum() / tot for a in acc], "o-", color="C3", label="this image: MAX so far")
        ax.plot(ep, [((u > threshold) & obj).sum() / tot for u in ups], "o--", color="C3", alpha=.5,
                label="this image: one epoch")
    if summary and summary.get("discovery"):
        ax.plot(ep[:len(summary["discovery"])], summary["discovery"], "s-", color="C0", label="all pairs: MAX so far")
        ax.plot(ep[:len(summary["single_epoch_coverage"])], summary["single_epoch_coverage"], "s--", color="C0",
                alpha=.5, label="all pairs: one epoch")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"share of the object with A > {threshold}")
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set_ylim(0, 1)
    ax.grid(alpha=.3)
    ax.legend(fontsize=6, loc="lower right")
    ax.set_title("discovery curve", fontsize=8)
    names = layout.class_names[1:]
    fig.suptitle(f"{layout.ids[i]} ({names[c]}): attention per epoch (top) and its running MAX (bottom); "
                 "white: the object", fontsize=8)
    fig.tight_layout()
    return fig


#: how tables and figures name the attention sources (code name -> display name)
#: (the OAA fusions' names come from their registry, :data:`wsss_lib.formulas.accumulation.FUSIONS`)
SOURCE_NAMES = {"cam": "CAM", **FUSION_SOURCES, "oaa_plus": "OAA+",
                "amr_spotlight": "AMR spotlight", "amr_compensation": "AMR compensation"}


def display_name(source: str) -> str:
    """``oaa_max`` -> ``OAA-MAX``, ``amr_xi0.5`` -> ``AMR (xi 0.5)``; unknown names pass through."""
    if source.startswith("amr_xi"):
        return f"AMR (xi {source[len('amr_xi'):]})"
    return SOURCE_NAMES.get(source, source)


def sources_figure(layout, sources: dict[str, dict], indices: Sequence, rule: str = "") -> "plt.Figure":
    """Rows of images: the image, each attention source's map of one present class (named at the
    row's left), and the ground truth; a colour bar for the attention and a legend for the classes.
    ``indices``: image indices (each row shows its first present class) or ``(image, class)`` pairs
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
            titles.append(display_name(name))
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
                     ignore_label="ignore (boundary)")
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


def attention_explorer(snapshots: dict, layout):
    """ipywidgets explorer: image, class, epoch slider, fusion (epoch map / MAX / AVE / final CAM).

    Returns the widget box; where widgets are not rendered (papermill, nbval, static HTML), call
    :func:`attention_evolution_figure` for the static version."""
    import ipywidgets as W

    maps = snapshots["maps"].float().numpy()
    names = layout.class_names[1:]
    first = detected_snapshot_rows(snapshots, layout, 1)  # opens on an image whose class is found (PICK_RULE)
    img_dd = W.Dropdown(options=[(layout.ids[i], j) for j, i in enumerate(snapshots["indices"])],
                        value=first[0] if first else 0, description="image")
    cls_dd = W.Dropdown(description="class")
    ep = W.IntSlider(min=1, max=maps.shape[0], value=maps.shape[0], description="epoch")
    kind = W.ToggleButtons(options=["epoch map", "OAA-MAX", "OAA-AVE", "final CAM"], value="epoch map")
    out = W.Output()

    def present(j) -> list[int]:
        return [int(c) for c in np.flatnonzero(layout.labels[snapshots["indices"][j]])] or [0]

    def classes(*_):
        opts = present(img_dd.value)
        cls_dd.options = [(names[c], c) for c in opts]
        cls_dd.value = opts[0]  # a present class is always selected (never a blank dropdown)

    def draw(*_):
        j = img_dd.value
        i = snapshots["indices"][j]
        c = cls_dd.value if cls_dd.value in present(j) else present(j)[0]
        img = layout.load_image(i)
        m = {"epoch map": lambda: maps[ep.value - 1, j, c],
             "OAA-MAX": lambda: snapshots["oaa_max"][j, c].float().numpy(),
             "OAA-AVE": lambda: snapshots["oaa_ave"][j, c].float().numpy(),
             "final CAM": lambda: snapshots["final_cam"][j, c].float().numpy()}[kind.value]()
        with out:
            out.clear_output(wait=True)
            fig, axes = plt.subplots(1, 2, figsize=(6.6, 3))
            axes[0].imshow(img)
            axes[1].imshow(overlay(img, _up(m, img.shape[:2])))
            for a in axes:
                a.axis("off")
            attention_colorbar(fig, "attention", ax=axes[1])
            axes[1].set_title(f"{names[c]}: {kind.value}" + (f" (epoch {ep.value})" if kind.value == "epoch map" else ""), fontsize=9)
            plt.show()

    img_dd.observe(lambda ch: (classes(), draw()), names="value")
    for w in (cls_dd, ep, kind):
        w.observe(draw, names="value")
    classes()
    draw()
    return W.VBox([W.HBox([img_dd, cls_dd]), W.HBox([ep, kind]), out])
