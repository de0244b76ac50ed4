"""How attention moves during training: OAA's Figure 1 (the attention of every epoch next to the accumulated maps), the discovery figure (what the running MAX covers beyond one epoch) and the explorer widget."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt  # matplotlib picks a headless backend when there is no display
import numpy as np

from wsss_lib.figures.picks import detected_snapshot_rows
from wsss_lib.figures.plots import _first_class, _up, add_class_legend, attention_colorbar, colorize_mask, overlay


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
                     ignore_label="ignore (boundary)", above_caption=bool(rule))
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


def attention_explorer(snapshots: dict, layout):
    """ipywidgets explorer: image, class, epoch slider, fusion (epoch map / MAX / AVE / final CAM).

    Returns the widget box; where widgets are not rendered (papermill, nbval, static HTML), call
    :func:`attention_evolution_figure` for the static version."""
    import ipywidgets as W  # lazy: heavy: only where a widget is drawn

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
