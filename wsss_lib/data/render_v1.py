"""Version 1 of the embedded benchmark: one discriminative part per object (a disc at one end of the
body), or two in the two-part variant (``parts_per_object=2``: a square at the other end)."""

from __future__ import annotations

import numpy as np

from wsss_lib.data.drawing import draw_body, draw_part2, hsv_to_rgb, place, scene
from wsss_lib.data.spec import PART_HUES, PART_PATTERNS, SPLIT_CODES, BenchmarkSpec, RenderedImage


def render_v1(spec: BenchmarkSpec, split: str, index: int) -> RenderedImage:
    """Render image ``index`` of ``split`` of a version 1 spec (deterministic in ``spec.seed``, split and index)."""
    sc = scene(spec, [spec.seed, SPLIT_CODES[split], index])
    rng, s, yy, xx, img, classes = sc.rng, spec.size, sc.yy, sc.xx, sc.img, sc.classes

    mask = np.zeros((s, s), dtype=np.uint8)
    part_mask = np.zeros((s, s), dtype=bool)
    part_index = np.zeros((s, s), dtype=np.uint8)
    instance = np.zeros((s, s), dtype=np.uint8)
    placed: list[tuple[float, float, float]] = []
    drawn = []
    for c in classes:
        a = rng.uniform(0.18, 0.28) * s
        b = a * rng.uniform(0.5, 0.65)
        centre = place(rng, s, a, placed, (0.2, 0.8), 0.7)
        if centre is None:
            continue  # no room: fewer objects in this image
        u, v, body = draw_body(img, c, rng, spec, xx, yy, centre, a, b)
        r = 0.55 * b
        pu, pv = 0.9 * a, 0.0
        d2 = (u - pu) ** 2 + (v - pv) ** 2
        part = d2 <= r * r
        col = hsv_to_rgb(PART_HUES[c] + rng.normal(0, 6), rng.uniform(0.75, 0.95), rng.uniform(0.8, 0.95))
        show = (True, False)
        if spec.parts_per_object == 2:  # extra draws only here: version 1 images stay bit-identical
            hidden = int(rng.integers(0, 2)) if rng.random() < spec.single_part_prob else -1
            show = (hidden != 0, hidden != 1)
        part2 = np.zeros_like(body)
        if show[1]:
            part2 = draw_part2(img, c, rng, u, v, a, b)
        if show[0]:
            img[part] = col
            if PART_PATTERNS[c] == "ring":
                inner = d2 <= (0.5 * r) ** 2
                img[inner] = 0.25 * col
        else:
            part = np.zeros_like(body)
        obj = body | part | part2
        mask[obj] = c + 1
        part_mask[obj] = False
        part_index[obj] = 0
        part_mask[part | part2] = True
        part_index[part2] = 2
        part_index[part] = 1
        drawn.append(c)
        instance[obj] = len(drawn)
    img += rng.normal(0, 5, size=img.shape)
    image = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return RenderedImage(image=image, mask=mask, part_mask=part_mask, objects=drawn, contexts=sc.contexts,
                         context_mask=sc.context_mask, clutter_masks=sc.clutter, part_index=part_index,
                         instance=instance)


__all__ = ["render_v1"]
