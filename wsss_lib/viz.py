"""Figures (matplotlib): masks in VOC colours, benchmark samples, attention grids."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt  # matplotlib picks a headless backend when there is no display
import numpy as np

from .data.synthetic import voc_colormap
from .io import atomic_path

_CMAP = voc_colormap()


def colorize_mask(mask: np.ndarray) -> np.ndarray:
    """Label map ``H x W`` to ``H x W x 3`` uint8 in the VOC palette (255 shows as cream)."""
    return _CMAP[np.asarray(mask, dtype=np.uint8)]


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.55, cmap: str = "jet") -> np.ndarray:
    """Blend a ``[0, 1]`` heat map over an RGB uint8 image."""
    h = np.clip(np.asarray(heat, dtype=np.float64), 0, 1)
    rgb = plt.get_cmap(cmap)(h)[..., :3] * 255
    return np.clip((1 - alpha) * image + alpha * rgb, 0, 255).astype(np.uint8)


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
