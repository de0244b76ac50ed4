"""The embedded benchmark: a deterministic miniature of PASCAL VOC written in VOC 2012 layout.

Why it looks the way it does (``docs/design.md`` section 4): every object is a *body* whose
appearance is drawn from one distribution shared by all classes (an ellipse with a fine stripe
texture and a faint class tint) plus a small *part* (a disc at one end of the body) whose colour and
pattern identify the class. A classifier can name the class from the part alone, so a plain CAM
tends to cover the part and miss the body, which is what OAA and AMR try to repair. Backgrounds are
cluttered (smooth colour fields, stripes, blobs, lines, noise), images hold one to three objects,
and two classes usually appear with context that is *not* part of them (``water`` under
``barge`` objects, ``rails`` under ``tram`` objects) so that false activation on context shows up.

Layout written under ``<root>/VOCdevkit/VOC2012``::

    JPEGImages/<id>.jpg                   RGB, quality 95
    SegmentationClass/<id>.png            palette PNG, VOC colour map, 0 = background
    ImageSets/Segmentation/{train,val}.txt
    ImageSets/Main/<class>_{train,val}.txt    VOC classification lists (1 present, -1 absent)
    classes.txt                           background + class names, one a line (our addition)
    benchmark.json                        spec, generator version, statistics, file digest

Generation is deterministic: image ``i`` of split ``s`` draws from
``numpy.random.default_rng([seed, s, i])``, so the same spec gives bit-identical files.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from wsss_lib.util.making import about_to_make
from wsss_lib.util.io import write_json, write_text

GENERATOR_VERSION = "1"

#: Foreground class names of the embedded benchmark (index 1..8 in masks; 0 is background).
CLASS_NAMES: tuple[str, ...] = ("aster", "barge", "crest", "delta", "ember", "fable", "tram", "halo")
#: Part hue (degrees) and pattern for each class: four hues x two patterns, so neither the colour
#: nor the pattern alone names the class.
PART_HUES = (0.0, 90.0, 180.0, 270.0, 0.0, 90.0, 180.0, 270.0)
PART_PATTERNS = ("solid", "solid", "solid", "solid", "ring", "ring", "ring", "ring")
#: Context drawn with a class (not part of its mask): class index (0-based) -> context name.
CONTEXT_OF_CLASS = {1: "water", 6: "rails"}
#: The second part of the two-part variant (``parts_per_object=2``): a square
#: at the other end of the body, hue index (into the four part hues) and pattern per class. The
#: (hue, pattern) pairs are all distinct and pair differently from the first part's, so either part
#: alone names the class.
PART2_HUE_INDEX = (2, 3, 0, 1, 3, 2, 1, 0)
PART2_PATTERNS = ("checker", "bars", "checker", "bars", "checker", "bars", "checker", "bars")
SPLIT_CODES = {"train": 1, "val": 2}


def voc_colormap(n: int = 256) -> np.ndarray:
    """The PASCAL VOC palette: ``n x 3`` uint8, entry ``k`` is the colour of label ``k``."""
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


@dataclass(frozen=True)
class BenchmarkSpec:
    """Everything that determines the generated files. Its digest names the cache folder."""

    n_train: int = 2000
    n_val: int = 500
    size: int = 96
    seed: int = 0
    objects_probs: tuple[float, ...] = (0.5, 0.35, 0.15)
    context_prob: float = 0.75
    context_other_prob: float = 0.05
    body_tint: float = 15.0
    version: str = GENERATOR_VERSION
    #: 1: one discriminative part per object (version 1, the default); 2: two parts at the two ends
    #: of the body, each sufficient for the class, one of them hidden with ``single_part_prob``
    parts_per_object: int = 1
    single_part_prob: float = 0.3
    #: version 2 only (:mod:`wsss_lib.data.miniature`): the object's long side over the image side is
    #: log-normal with this median and log-spread (truncated to [0.1, 1.2]); each of the object's
    #: three regions is hidden with ``hide_prob`` (at least one stays)
    size_median: float = 0.47
    size_sigma: float = 0.88
    hide_prob: float = 0.25

    def __post_init__(self) -> None:
        if self.version not in ("1", "2"):
            raise ValueError(f"BenchmarkSpec.version must be '1' or '2', got {self.version!r}")
        if self.version == "2" and (self.parts_per_object, self.single_part_prob) != (1, 0.3):
            raise ValueError("BenchmarkSpec: parts_per_object and single_part_prob are version 1 options; "
                             "version 2 objects have three regions (see hide_prob)")
        if not (0.05 <= self.size_median <= 1.0 and 0.0 <= self.size_sigma <= 2.0 and 0.0 <= self.hide_prob < 1.0):
            raise ValueError(f"BenchmarkSpec: size_median must be in [0.05, 1], size_sigma in [0, 2] and "
                             f"hide_prob in [0, 1), got {self.size_median}, {self.size_sigma}, {self.hide_prob}")
        for name in ("n_train", "n_val"):
            if getattr(self, name) < 1:
                raise ValueError(f"BenchmarkSpec.{name} must be >= 1, got {getattr(self, name)}")
        if self.size < 32:
            raise ValueError(f"BenchmarkSpec.size must be >= 32 pixels, got {self.size}")
        if abs(sum(self.objects_probs) - 1.0) > 1e-6 or len(self.objects_probs) > 3:
            raise ValueError(
                f"BenchmarkSpec.objects_probs must give P(1), P(2), P(3) objects summing to 1, "
                f"got {self.objects_probs}")
        if self.parts_per_object not in (1, 2):
            raise ValueError(f"BenchmarkSpec.parts_per_object must be 1 or 2, got {self.parts_per_object}")
        if not 0.0 <= self.single_part_prob <= 1.0:
            raise ValueError(f"BenchmarkSpec.single_part_prob must be in [0, 1], got {self.single_part_prob}")

    def fields(self) -> dict:
        """The spec's fields; the two-part options only when they are in use, so that every
        one-part spec keeps the digest (cache folder, run identities) it had before they existed."""
        d = asdict(self)
        if self.parts_per_object == 1:
            d.pop("parts_per_object")
            d.pop("single_part_prob")
        if self.version == "1":  # the version 2 options: absent from every version 1 digest
            for name in ("size_median", "size_sigma", "hide_prob"):
                d.pop(name)
        return d

    def digest(self) -> str:
        blob = repr(sorted(self.fields().items())).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


#: The default benchmark (version 1) and its two-part variant (``data_root="embedded:parts2"``). The
#: quick profile's tiny versions of both are in :mod:`wsss_lib.runs.profile`, with everything else quick sets.
DEFAULT_SPEC = BenchmarkSpec()
PARTS2_SPEC = BenchmarkSpec(parts_per_object=2)
#: version 2, the full profile's default (``data_root="embedded:mini"``, :mod:`wsss_lib.data.miniature`):
#: 112 px, for the tiny backbone at output stride 4 (28 cells a side, as VOC's 224 px short side at
#: stride 8); 1,300 training images instead of 2,000, the 2-core budget of ``make run`` (each stage's
#: step costs 1.1-1.4x version 1's: reports/notes/benchmark.md), decided before any method ran on it
MINI_SPEC = BenchmarkSpec(version="2", size=112, n_train=1300)


@dataclass
class RenderedImage:
    image: np.ndarray  # H x W x 3 uint8
    mask: np.ndarray  # H x W uint8, 0 background, k = class k
    part_mask: np.ndarray  # H x W bool, visible discriminative parts
    #: H x W uint8: 0 none, 1 the first part, 2 the second part (two-part variant, version 2), 3 the
    #: band (version 2), where visible
    part_index: np.ndarray | None = None
    objects: list[int] = field(default_factory=list)  # 0-based classes, in drawing order
    contexts: list[str] = field(default_factory=list)
    #: where context (water, rails) was drawn, and the saturated clutter items (the background
    #: things a salient-object detector tends to fire on); used by :mod:`wsss_lib.data.saliency`
    context_mask: np.ndarray | None = None
    clutter_masks: list[np.ndarray] = field(default_factory=list)
    #: H x W uint8: 0 background, j + 1 where object ``j`` of ``objects`` is visible (later objects
    #: occlude earlier ones); what per-instance measures (:mod:`wsss_lib.data.geometry`) read
    instance: np.ndarray | None = None


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    h = (h % 360.0) / 60.0
    c = v * s
    x = c * (1 - abs(h % 2 - 1))
    m = v - c
    r, g, b = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c), (c, 0, x)][int(h) % 6]
    return np.array([r + m, g + m, b + m]) * 255.0


def _class_tints(n: int) -> np.ndarray:
    """Fixed unit RGB directions, one per class: the body's faint class evidence."""
    rng = np.random.default_rng(12345)
    d = rng.normal(size=(n, 3))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


_TINTS = _class_tints(len(CLASS_NAMES))


def _background(rng: np.random.Generator, s: int, yy: np.ndarray, xx: np.ndarray,
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
            col = _hsv_to_rgb(45.0 + 90.0 * rng.integers(0, 4) + rng.normal(0, 8), 0.7, 0.8)
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


def _draw_context(img: np.ndarray, name: str, rng: np.random.Generator, s: int,
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


def render_image(spec: BenchmarkSpec, split: str, index: int) -> RenderedImage:
    """Render image ``index`` of ``split`` (deterministic in ``spec.seed``, split and index)."""
    if split not in SPLIT_CODES:
        raise ValueError(f"split must be one of {sorted(SPLIT_CODES)}, got {split!r}")
    if spec.version == "2":
        from wsss_lib.data.miniature import render_miniature

        return render_miniature(spec, split, index)
    sc = _scene(spec, [spec.seed, SPLIT_CODES[split], index])
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
        centre = _place(rng, s, a, placed, (0.2, 0.8), 0.7)
        if centre is None:
            continue  # no room: fewer objects in this image
        u, v, body = _draw_body(img, c, rng, spec, xx, yy, centre, a, b)
        r = 0.55 * b
        pu, pv = 0.9 * a, 0.0
        d2 = (u - pu) ** 2 + (v - pv) ** 2
        part = d2 <= r * r
        col = _hsv_to_rgb(PART_HUES[c] + rng.normal(0, 6), rng.uniform(0.75, 0.95), rng.uniform(0.8, 0.95))
        show = (True, False)
        if spec.parts_per_object == 2:  # extra draws only here: version 1 images stay bit-identical
            hidden = int(rng.integers(0, 2)) if rng.random() < spec.single_part_prob else -1
            show = (hidden != 0, hidden != 1)
        part2 = np.zeros_like(body)
        if show[1]:
            part2 = _draw_part2(img, c, rng, u, v, a, b)
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


@dataclass
class _Scene:
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


def _scene(spec: BenchmarkSpec, seed: list[int]) -> _Scene:
    """Draw the background, the object classes and the context of an image seeded with ``seed``."""
    rng = np.random.default_rng(seed)
    s = spec.size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float64)
    clutter: list[np.ndarray] = []
    img = _background(rng, s, yy, xx, clutter)
    context_mask = np.zeros((s, s), dtype=bool)
    classes, contexts = _classes_and_context(rng, spec, img, context_mask, yy, xx)
    return _Scene(rng, yy, xx, img, clutter, classes, contexts, context_mask)


def _classes_and_context(rng: np.random.Generator, spec: BenchmarkSpec, img: np.ndarray, context_mask: np.ndarray,
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
            context_mask |= _draw_context(img, name, rng, spec.size, yy, xx)
    return classes, contexts


def _place(rng: np.random.Generator, s: int, a: float, placed: list, span: tuple[float, float],
           spacing: float) -> tuple[float, float] | None:
    """A centre in ``span`` (shares of the side) at least ``spacing * (a + a')`` from every placed
    object (30 tries; ``None``: no room); the object is added to ``placed``."""
    for _ in range(30):
        cx, cy = rng.uniform(span[0] * s, span[1] * s, size=2)
        if all(np.hypot(cx - px, cy - py) > spacing * (a + pa) for px, py, pa in placed):
            placed.append((cx, cy, a))
            return cx, cy
    return None


def _draw_body(img: np.ndarray, c: int, rng: np.random.Generator, spec: BenchmarkSpec, xx: np.ndarray,
               yy: np.ndarray, centre: tuple[float, float], a: float, b: float):
    """The body of class ``c``: an ellipse of semi-axes ``a``, ``b`` at a random angle, the shared
    appearance (base colour, fine stripes) with the class's faint tint; returns the rotated frame
    ``(u, v)`` and the body's mask."""
    cx, cy = centre
    th = rng.uniform(0, 2 * np.pi)
    u = (xx - cx) * np.cos(th) + (yy - cy) * np.sin(th)
    v = -(xx - cx) * np.sin(th) + (yy - cy) * np.cos(th)
    body = (u / a) ** 2 + (v / b) ** 2 <= 1.0
    base = np.array([140.0, 115.0, 90.0]) + rng.normal(0, 22, size=3) + spec.body_tint * _TINTS[c]
    stripes = 16.0 * np.sin(2 * np.pi * u / rng.uniform(3.5, 5.0))
    img[body] = base + stripes[body, None]
    return u, v, body


def _draw_part2(img: np.ndarray, c: int, rng: np.random.Generator, u: np.ndarray, v: np.ndarray,
                a: float, b: float) -> np.ndarray:
    """The two-part variant's second part: a square on the body's other end (centre at ``-0.6 a``
    on the long axis, side ``1.1 b``), in the class's second hue with a checker or bar pattern.
    Mostly inside the body; returns its mask (part of the object's mask)."""
    half = 0.55 * b
    du, dv = u + 0.6 * a, v
    sq = (np.abs(du) <= half) & (np.abs(dv) <= half)
    col = _hsv_to_rgb(PART_HUES[PART2_HUE_INDEX[c]] + rng.normal(0, 6), rng.uniform(0.75, 0.95),
                      rng.uniform(0.8, 0.95))
    cell = max(half / 2, 1.0)
    if PART2_PATTERNS[c] == "checker":
        dark = ((np.floor(du / cell) + np.floor(dv / cell)) % 2) == 0
    else:  # bars across the long axis
        dark = (np.floor(du / cell) % 2) == 0
    img[sq] = col
    img[sq & dark] = 0.25 * col
    return sq


def rendered_set(spec: BenchmarkSpec, split: str, n: int) -> tuple[torch.Tensor, np.ndarray]:
    """The first ``n`` images of ``split`` rendered from ``spec`` (no files) as ``n x 3 x H x W``
    uint8, and their image-level labels (``n x K`` bool)."""
    import torch

    imgs, labels = [], np.zeros((n, len(CLASS_NAMES)), bool)
    for i in range(n):
        r = render_image(spec, split, i)
        imgs.append(torch.from_numpy(r.image).permute(2, 0, 1))
        present = np.unique(r.mask)
        labels[i, present[present > 0] - 1] = True
    return torch.stack(imgs), labels


def image_id(split: str, index: int) -> str:
    return f"{split[0]}{index:06d}"


def _digest_files(root: Path, names: list[str]) -> str:
    h = hashlib.sha256()
    for name in names:
        h.update(name.encode())
        h.update((root / name).read_bytes())
    return h.hexdigest()


def generate_benchmark(out_dir: str | os.PathLike, spec: BenchmarkSpec = DEFAULT_SPEC,
                       progress: bool = True) -> Path:
    """Generate the benchmark of ``spec`` into ``out_dir`` (created; must not exist or be empty).

    Returns the VOC2012 folder (``out_dir/VOCdevkit/VOC2012``), the ``data_root`` that readers take.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir}: refusing to generate into a folder that is not empty")
    voc = out_dir / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    palette = voc_colormap().reshape(-1).tolist()
    k = len(CLASS_NAMES)
    t0 = time.perf_counter()
    stats = _StatsAccumulator(k)
    written: list[str] = []
    labels: dict[str, list[np.ndarray]] = {}
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None
    for split, n in (("train", spec.n_train), ("val", spec.n_val)):
        ids = []
        present = np.zeros((n, k), dtype=bool)
        it = range(n)
        if progress and tqdm is not None:
            it = tqdm(it, desc=f"generating {split}", leave=False)
        for i in it:
            r = render_image(spec, split, i)
            iid = image_id(split, i)
            Image.fromarray(r.image).save(voc / "JPEGImages" / f"{iid}.jpg", quality=95)
            m = Image.fromarray(r.mask, mode="P")
            m.putpalette(palette)
            m.save(voc / "SegmentationClass" / f"{iid}.png", optimize=False)
            written += [f"JPEGImages/{iid}.jpg", f"SegmentationClass/{iid}.png"]
            ids.append(iid)
            cls = np.unique(r.mask)
            present[i, cls[cls > 0] - 1] = True
            stats.add(split, r)
        labels[split] = present
        write_text(voc / "ImageSets/Segmentation" / f"{split}.txt", "\n".join(ids) + "\n")
        for c, name in enumerate(CLASS_NAMES):
            lines = [f"{iid} {1 if present[j, c] else -1:2d}" for j, iid in enumerate(ids)]
            write_text(voc / "ImageSets/Main" / f"{name}_{split}.txt", "\n".join(lines) + "\n")
    write_text(voc / "classes.txt", "\n".join(("background",) + CLASS_NAMES) + "\n")
    seconds = time.perf_counter() - t0
    meta = {
        "generator_version": spec.version,
        "spec": spec.fields(),
        "classes": list(CLASS_NAMES),
        "contexts": {CLASS_NAMES[c]: n for c, n in CONTEXT_OF_CLASS.items()},
        "files_sha256": _digest_files(voc, written),
        "statistics": stats.summary(),
    }
    write_json(voc / "benchmark.json", meta)
    # Timing is not part of the deterministic files: keep it out of benchmark.json.
    write_json(out_dir / "generation_time.json", {"seconds": round(seconds, 3)})
    return voc


def ensure_benchmark(spec: BenchmarkSpec = DEFAULT_SPEC, cache_dir: str | os.PathLike | None = None,
                     progress: bool = True) -> Path:
    """Return the VOC2012 folder of ``spec`` under the cache, generating it first if missing.

    Generation happens in a temporary sibling folder that is renamed into place at the end, so an
    interrupted generation never leaves a half-written benchmark behind.
    """
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    final = cache / "embedded" / f"{spec.digest()}"
    voc = final / "VOCdevkit" / "VOC2012"
    if (voc / "benchmark.json").exists():
        return voc
    about_to_make(f"generate the embedded benchmark {spec.digest()} ({spec.n_train} train + {spec.n_val} val images "
                  f"of {spec.size} px, version {spec.version}) into {final}")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        generate_benchmark(tmp, spec, progress=progress)
        try:
            os.replace(tmp, final)
        except OSError:
            if not (voc / "benchmark.json").exists():  # lost a race to nobody: re-raise
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return voc


def benchmark_exists(spec: BenchmarkSpec, cache_dir: str | os.PathLike | None = None) -> bool:
    """Whether the benchmark of ``spec`` is generated in the cache (nothing is generated here)."""
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    return (cache / "embedded" / spec.digest() / "VOCdevkit" / "VOC2012" / "benchmark.json").exists()


def default_cache_dir() -> Path:
    """``$WSSS_CACHE`` if set, else ``~/.cache/wsss-notebooks``."""
    return Path(os.environ.get("WSSS_CACHE") or Path.home() / ".cache" / "wsss-notebooks")


class _StatsAccumulator:
    """Measured properties of the generated set (docs/design.md section 4)."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.per_split: dict[str, dict] = {}

    def add(self, split: str, r: RenderedImage) -> None:
        st = self.per_split.setdefault(split, {
            "images": 0, "class_images": np.zeros(self.k, int), "objects_hist": np.zeros(4, int),
            "cooc": np.zeros((self.k, self.k), int), "part_ratio": [], "fg_fraction": [],
            "context_with": {}, "context_images": {}})
        st["images"] += 1
        present = sorted({c for c in np.unique(r.mask).tolist() if c > 0})
        st["objects_hist"][min(len(r.objects), 3)] += 1
        for c in present:
            st["class_images"][c - 1] += 1
            for d in present:
                st["cooc"][c - 1, d - 1] += 1
        fg = r.mask > 0
        st["fg_fraction"].append(fg.mean())
        if fg.any():
            st["part_ratio"].append(r.part_mask.sum() / fg.sum())
        for name in r.contexts:
            st["context_images"][name] = st["context_images"].get(name, 0) + 1
            row = st["context_with"].setdefault(name, np.zeros(self.k, int))
            for c in present:
                row[c - 1] += 1

    def summary(self) -> dict:
        out = {}
        for split, st in self.per_split.items():
            pr = np.array(st["part_ratio"])
            out[split] = {
                "images": st["images"],
                "images_per_class": dict(zip(CLASS_NAMES, st["class_images"].tolist())),
                "objects_per_image": {str(i): int(st["objects_hist"][i]) for i in (1, 2, 3)},
                "cooccurrence": st["cooc"].tolist(),
                "part_to_object_area": {"mean": float(pr.mean()), "median": float(np.median(pr)),
                                        "p10": float(np.percentile(pr, 10)),
                                        "p90": float(np.percentile(pr, 90))},
                "foreground_fraction": float(np.mean(st["fg_fraction"])),
                "context_images": st["context_images"],
                "context_with_class": {k: dict(zip(CLASS_NAMES, v.tolist()))
                                       for k, v in st["context_with"].items()},
            }
        return out
