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

from wsss_lib.data.drawing import draw_body, draw_part2, hsv_to_rgb, place, scene
from wsss_lib.data.spec import PART_HUES, PART_PATTERNS, SPLIT_CODES, BenchmarkSpec, RenderedImage

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
    col = hsv_to_rgb(PART_HUES[BAND_HUE_INDEX[c]] + rng.normal(0, 6), rng.uniform(0.75, 0.95),
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
    sc = scene(spec, [spec.seed, SPLIT_CODES[split], index, 2])
    rng, s, yy, xx, img, classes = sc.rng, spec.size, sc.yy, sc.xx, sc.img, sc.classes

    mask = np.zeros((s, s), dtype=np.uint8)
    part_index = np.zeros((s, s), dtype=np.uint8)
    instance = np.zeros((s, s), dtype=np.uint8)
    placed: list[tuple[float, float, float]] = []
    drawn: list[int] = []
    for c, long_side in zip(classes, object_sizes(rng, spec, len(classes))):
        a = long_side / 2.2  # the front disc sticks out about 0.2 a beyond the body
        b = a * rng.uniform(0.5, 0.65)
        centre = place(rng, s, a, placed, (0.15, 0.85), 0.5)
        if centre is None:
            continue  # no room: fewer objects in this image
        u, v, body = draw_body(img, c, rng, spec, xx, yy, centre, a, b)
        show = rng.random(3) >= spec.hide_prob
        if not show.any():
            show[int(rng.integers(0, 3))] = True
        regions = [np.zeros_like(body)] * 3
        if show[2]:
            regions[2] = _draw_band(img, c, rng, u, v, a, body)
        if show[1]:
            regions[1] = draw_part2(img, c, rng, u, v, a, b)
        if show[0]:
            r = 0.55 * b
            d2 = (u - 0.9 * a) ** 2 + v ** 2
            disc = d2 <= r * r
            col = hsv_to_rgb(PART_HUES[c] + rng.normal(0, 6), rng.uniform(0.75, 0.95), rng.uniform(0.8, 0.95))
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
    return RenderedImage(image=image, mask=mask, part_mask=part_index > 0, objects=drawn, contexts=sc.contexts,
                         context_mask=sc.context_mask, clutter_masks=sc.clutter, part_index=part_index,
                         instance=instance)


__all__ = ["BAND_HUE_INDEX", "BAND_PATTERNS", "SIZE_RANGE", "object_sizes", "render_miniature"]
