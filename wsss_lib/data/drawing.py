"""The drawing kit both benchmark renderers (version 1: :mod:`wsss_lib.data.render_v1`, version 2:
:mod:`wsss_lib.data.miniature`) and the pretraining task (:mod:`wsss_lib.models.pretrain`) draw with:
colours, the cluttered background, context, the scene every image starts from, object placement,
the body and the second discriminative region. Public, so editing one shared helper is an edit of
the kit, seen by every user of it (the benchmarks' file-digest tests hold them bit-identical)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from wsss_lib.data.spec import CLASS_NAMES, CONTEXT_OF_CLASS, PART_HUES, BenchmarkSpec

#: The second part of the two-part variant (``parts_per_object=2``): a square
#: at the other end of the body, hue index (into the four part hues) and pattern per class. The
#: (hue, pattern) pairs are all distinct and pair differently from the first part's, so either part
#: alone names the class.
PART2_HUE_INDEX = (2, 3, 0, 1, 3, 2, 1, 0)


PART2_PATTERNS = ("checker", "bars", "checker", "bars", "checker", "bars", "checker", "bars")


def hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    h = (h % 360.0) / 60.0
    c = v * s
    x = c * (1 - abs(h % 2 - 1))
    m = v - c
    r, g, b = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c), (c, 0, x)][int(h) % 6]
    return np.array([r + m, g + m, b + m]) * 255.0


def class_tints(n: int) -> np.ndarray:
    """Fixed unit RGB directions, one per class: the body's faint class evidence."""
    rng = np.random.default_rng(12345)
    d = rng.normal(size=(n, 3))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


TINTS = class_tints(len(CLASS_NAMES))


def background(rng: np.random.Generator, s: int, yy: np.ndarray, xx: np.ndarray,
                saturated: list | None = None) -> np.ndarray:
    # Smooth low-saturation colour field.
    coarse = rng.uniform(60, 190, size=(4, 4, 1)) + rng.normal(0, 18, size=(4, 4, 3))
    img = np.asarray(Image.fromarray(np.clip(coarse, 0, 255).astype(np.uint8)).resize(
        (s, s), Image.BILINEAR), dtype=np.float64)
    # Faint oriented stripes.
    th = rng.uniform(0, np.pi)
    period = rng.uniform(4, 12)
    img += rng.uniform(4, 14) * np.sin(2 * np.pi * (xx * np.cos(th) + yy * np.sin(th)) / period)[..., None]
    # Clutter: blobs, rectangles and lines in muted colours, a few saturated ones of off-part hues.
    for _ in range(rng.integers(3, 9)):
        kind = rng.integers(0, 3)
        vivid = rng.random() < 0.25
        if vivid:
            col = hsv_to_rgb(45.0 + 90.0 * rng.integers(0, 4) + rng.normal(0, 8), 0.7, 0.8)
        else:
            col = rng.uniform(40, 210) + rng.normal(0, 20, size=3)
        cx, cy = rng.uniform(0, s, size=2)
        if kind == 0:
            r = rng.uniform(0.03, 0.12) * s
            m = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        elif kind == 1:
            w, h = rng.uniform(0.05, 0.25, size=2) * s
            m = (np.abs(xx - cx) <= w / 2) & (np.abs(yy - cy) <= h / 2)
        else:
            t = rng.uniform(0, np.pi)
            m = np.abs((xx - cx) * np.sin(t) - (yy - cy) * np.cos(t)) <= rng.uniform(0.6, 1.6)
        img[m] = 0.5 * img[m] + 0.5 * col
        if vivid and saturated is not None:
            saturated.append(m)
    return img


def draw_context(img: np.ndarray, name: str, rng: np.random.Generator, s: int,
                  yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Draw context ``name`` into ``img``; returns where it was drawn."""
    top = rng.uniform(0.62, 0.75) * s
    band = yy >= top
    if name == "water":
        waves = np.sin(2 * np.pi * (xx / rng.uniform(8, 14) + yy / 5.0))
        col = np.stack([40 + 0 * xx, 90 + 25 * waves, 170 + 30 * waves], -1)
        img[band] = 0.15 * img[band] + 0.85 * col[band]
    elif name == "rails":
        ys = top + np.array([0.3, 0.7]) * (s - top)
        ties = (np.abs(((xx + rng.uniform(0, 8)) % 8) - 4) <= 1) & band
        img[ties] = 0.3 * img[ties] + 0.7 * np.array([110.0, 75.0, 40.0])
        for y in ys:
            m = np.abs(yy - y) <= 1.0
            img[m] = np.array([45.0, 45.0, 55.0])
    else:  # pragma: no cover - guarded by CONTEXT_OF_CLASS
        raise ValueError(f"unknown context {name!r}")
    return band


@dataclass
class Scene:
    """The start every rendered image shares: its generator, pixel grid, background (with the
    saturated clutter items), the classes of its objects and the context they bring."""

    rng: np.random.Generator
    yy: np.ndarray
    xx: np.ndarray
    img: np.ndarray
    clutter: list
    classes: list[int]
    contexts: list[str]
    context_mask: np.ndarray


def scene(spec: BenchmarkSpec, seed: list[int]) -> Scene:
    """Draw the background, the object classes and the context of an image seeded with ``seed``."""
    rng = np.random.default_rng(seed)
    s = spec.size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float64)
    clutter: list[np.ndarray] = []
    img = background(rng, s, yy, xx, clutter)
    context_mask = np.zeros((s, s), dtype=bool)
    classes, contexts = classes_and_context(rng, spec, img, context_mask, yy, xx)
    return Scene(rng, yy, xx, img, clutter, classes, contexts, context_mask)


def classes_and_context(rng: np.random.Generator, spec: BenchmarkSpec, img: np.ndarray, context_mask: np.ndarray,
                         yy: np.ndarray, xx: np.ndarray) -> tuple[list[int], list[str]]:
    """Draw how many objects and of which classes, then the context each class brings (drawn into
    ``img`` and ``context_mask``); returns (classes, context names)."""
    n_obj = 1 + int(rng.choice(len(spec.objects_probs), p=spec.objects_probs))
    classes = [int(c) for c in rng.integers(0, len(CLASS_NAMES), size=n_obj)]
    contexts = []
    for ci, name in sorted(CONTEXT_OF_CLASS.items()):
        p = spec.context_prob if ci in classes else spec.context_other_prob
        if rng.random() < p:
            contexts.append(name)
            context_mask |= draw_context(img, name, rng, spec.size, yy, xx)
    return classes, contexts


def place(rng: np.random.Generator, s: int, a: float, placed: list, span: tuple[float, float],
           spacing: float) -> tuple[float, float] | None:
    """A centre in ``span`` (shares of the side) at least ``spacing * (a + a')`` from every placed
    object (30 tries; ``None``: no room); the object is added to ``placed``."""
    for _ in range(30):
        cx, cy = rng.uniform(span[0] * s, span[1] * s, size=2)
        if all(np.hypot(cx - px, cy - py) > spacing * (a + pa) for px, py, pa in placed):
            placed.append((cx, cy, a))
            return cx, cy
    return None


def draw_body(img: np.ndarray, c: int, rng: np.random.Generator, spec: BenchmarkSpec, xx: np.ndarray,
               yy: np.ndarray, centre: tuple[float, float], a: float, b: float):
    """The body of class ``c``: an ellipse of semi-axes ``a``, ``b`` at a random angle, the shared
    appearance (base colour, fine stripes) with the class's faint tint; returns the rotated frame
    ``(u, v)`` and the body's mask."""
    cx, cy = centre
    th = rng.uniform(0, 2 * np.pi)
    u = (xx - cx) * np.cos(th) + (yy - cy) * np.sin(th)
    v = -(xx - cx) * np.sin(th) + (yy - cy) * np.cos(th)
    body = (u / a) ** 2 + (v / b) ** 2 <= 1.0
    base = np.array([140.0, 115.0, 90.0]) + rng.normal(0, 22, size=3) + spec.body_tint * TINTS[c]
    stripes = 16.0 * np.sin(2 * np.pi * u / rng.uniform(3.5, 5.0))
    img[body] = base + stripes[body, None]
    return u, v, body


def draw_part2(img: np.ndarray, c: int, rng: np.random.Generator, u: np.ndarray, v: np.ndarray,
                a: float, b: float) -> np.ndarray:
    """The two-part variant's second part: a square on the body's other end (centre at ``-0.6 a``
    on the long axis, side ``1.1 b``), in the class's second hue with a checker or bar pattern.
    Mostly inside the body; returns its mask (part of the object's mask)."""
    half = 0.55 * b
    du, dv = u + 0.6 * a, v
    sq = (np.abs(du) <= half) & (np.abs(dv) <= half)
    col = hsv_to_rgb(PART_HUES[PART2_HUE_INDEX[c]] + rng.normal(0, 6), rng.uniform(0.75, 0.95),
                      rng.uniform(0.8, 0.95))
    cell = max(half / 2, 1.0)
    if PART2_PATTERNS[c] == "checker":
        dark = ((np.floor(du / cell) + np.floor(dv / cell)) % 2) == 0
    else:  # bars across the long axis
        dark = (np.floor(du / cell) % 2) == 0
    img[sq] = col
    img[sq & dark] = 0.25 * col
    return sq
