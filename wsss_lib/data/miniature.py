"""Version 2 of the embedded benchmark: the VOC-faithful miniature (``BenchmarkSpec(version="2")``).

Version 1 gives each object one small discriminative part on a body of one shared appearance, at
one narrow range of sizes. Version 2 keeps that appearance model (the body is shared by all classes
up to a faint tint; the class is written on its regions; the same backgrounds and context) and
changes what :mod:`wsss_lib.data.geometry` measures against VOC:

- **three discriminative regions per object**, each sufficient for the class: a disc at the front
  end (version 1's part), a square at the back end (the two-part variant's second part) and a band
  across the middle; each is hidden with ``hide_prob`` (at least one stays), so the classifier can
  rely on any of them and its attention has somewhere to move;
- **sizes spread like VOC's**: the object's long side over the image side is log-normal
  (``size_median``, ``size_sigma``; truncated to [0.1, 1.2], so some objects are cut by the border
  as VOC's often are), objects drawn from the largest to the smallest (small ones in front).

Which image size and network the spec is meant for (the cells per object) is a setting of the
profile, decided and measured in ``reports/benchmark.md``.
"""

from __future__ import annotations

import numpy as np

from wsss_lib.data.synthetic import (CLASS_NAMES, CONTEXT_OF_CLASS, PART2_HUE_INDEX, PART2_PATTERNS, PART_HUES,
                                     PART_PATTERNS, SPLIT_CODES, BenchmarkSpec, RenderedImage, _TINTS,
                                     _background, _draw_context, _draw_part2, _hsv_to_rgb)

#: The band's code per class (index into the four part hues, pattern): distinct (hue, pattern) pairs,
#: paired differently from the other two regions', so the band alone names the class.
BAND_HUE_INDEX = (1, 2, 3, 0, 2, 3, 0, 1)
BAND_PATTERNS = ("dots", "dots", "dots", "dots", "diagonal", "diagonal", "diagonal", "diagonal")
#: the truncation of the relative long side
SIZE_RANGE = (0.1, 1.2)


def object_sizes(rng: np.random.Generator, spec: BenchmarkSpec, n: int) -> np.ndarray:
    """``n`` long sides (pixels) of the version 2 size distribution, largest first."""
    rel = np.exp(np.log(spec.size_median) + spec.size_sigma * rng.standard_normal(n))
    return np.sort(np.clip(rel, *SIZE_RANGE))[::-1] * spec.size


def _draw_band(img: np.ndarray, c: int, rng: np.random.Generator, u: np.ndarray, v: np.ndarray,
               a: float, body: np.ndarray) -> np.ndarray:
    """The band: ``|u - 0.15 a| <= 0.13 a`` inside the body, in the class's band hue with dots or
    diagonal stripes; returns its mask."""
    band = (np.abs(u - 0.15 * a) <= 0.13 * a) & body
    col = _hsv_to_rgb(PART_HUES[BAND_HUE_INDEX[c]] + rng.normal(0, 6), rng.uniform(0.75, 0.95),
                      rng.uniform(0.8, 0.95))
    cell = max(0.09 * a, 1.0)
    if BAND_PATTERNS[c] == "dots":
        dark = ((u / cell) % 2 - 1) ** 2 + ((v / cell) % 2 - 1) ** 2 <= 0.45
    else:
        dark = ((np.floor((u + v) / cell)) % 2) == 0
    img[band] = col
    img[band & dark] = 0.25 * col
    return band


def render_miniature(spec: BenchmarkSpec, split: str, index: int) -> RenderedImage:
    """Render image ``index`` of ``split`` of a version 2 spec (deterministic in seed, split, index)."""
    rng = np.random.default_rng([spec.seed, SPLIT_CODES[split], index, 2])
    s = spec.size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float64)
    clutter: list[np.ndarray] = []
    img = _background(rng, s, yy, xx, clutter)
    k = len(CLASS_NAMES)
    n_obj = 1 + int(rng.choice(len(spec.objects_probs), p=spec.objects_probs))
    classes = [int(c) for c in rng.integers(0, k, size=n_obj)]
    contexts = []
    context_mask = np.zeros((s, s), dtype=bool)
    for ci, name in sorted(CONTEXT_OF_CLASS.items()):
        p = spec.context_prob if ci in classes else spec.context_other_prob
        if rng.random() < p:
            contexts.append(name)
            context_mask |= _draw_context(img, name, rng, s, yy, xx)

    mask = np.zeros((s, s), dtype=np.uint8)
    part_index = np.zeros((s, s), dtype=np.uint8)
    instance = np.zeros((s, s), dtype=np.uint8)
    placed: list[tuple[float, float, float]] = []
    drawn: list[int] = []
    for c, long_side in zip(classes, object_sizes(rng, spec, n_obj)):
        a = long_side / 2.2  # the front disc sticks out about 0.2 a beyond the body
        b = a * rng.uniform(0.5, 0.65)
        for _ in range(30):
            cx, cy = rng.uniform(0.15 * s, 0.85 * s, size=2)
            if all(np.hypot(cx - px, cy - py) > 0.5 * (a + pa) for px, py, pa in placed):
                break
        else:
            continue  # no room: fewer objects in this image
        placed.append((cx, cy, a))
        th = rng.uniform(0, 2 * np.pi)
        u = (xx - cx) * np.cos(th) + (yy - cy) * np.sin(th)
        v = -(xx - cx) * np.sin(th) + (yy - cy) * np.cos(th)
        body = (u / a) ** 2 + (v / b) ** 2 <= 1.0
        base = np.array([140.0, 115.0, 90.0]) + rng.normal(0, 22, size=3) + spec.body_tint * _TINTS[c]
        stripes = 16.0 * np.sin(2 * np.pi * u / rng.uniform(3.5, 5.0))
        img[body] = base + stripes[body, None]
        show = rng.random(3) >= spec.hide_prob
        if not show.any():
            show[int(rng.integers(0, 3))] = True
        regions = [np.zeros_like(body)] * 3
        if show[2]:
            regions[2] = _draw_band(img, c, rng, u, v, a, body)
        if show[1]:
            regions[1] = _draw_part2(img, c, rng, u, v, a, b)
        if show[0]:
            r = 0.55 * b
            d2 = (u - 0.9 * a) ** 2 + v ** 2
            disc = d2 <= r * r
            col = _hsv_to_rgb(PART_HUES[c] + rng.normal(0, 6), rng.uniform(0.75, 0.95), rng.uniform(0.8, 0.95))
            img[disc] = col
            if PART_PATTERNS[c] == "ring":
                img[d2 <= (0.5 * r) ** 2] = 0.25 * col
            regions[0] = disc
        obj = body | regions[0] | regions[1] | regions[2]
        mask[obj] = c + 1
        part_index[obj] = 0
        for j in (2, 1, 0):  # drawing order: the band under the square under the disc
            part_index[regions[j]] = j + 1
        drawn.append(c)
        instance[obj] = len(drawn)
    img += rng.normal(0, 5, size=img.shape)
    image = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return RenderedImage(image=image, mask=mask, part_mask=part_index > 0, objects=drawn, contexts=contexts,
                         context_mask=context_mask, clutter_masks=clutter, part_index=part_index,
                         instance=instance)


__all__ = ["BAND_HUE_INDEX", "BAND_PATTERNS", "SIZE_RANGE", "object_sizes", "render_miniature"]
