"""Class-agnostic saliency maps: the background cue of OAA's pseudo labels (OAA section 4).

On PASCAL VOC the user points ``saliency_root`` at a folder of saliency maps, one greyscale PNG per
image named ``<image id>.png`` (as the OAA authors distribute them: 0 = background, 255 = salient).

For the embedded benchmark, :func:`ensure_saliency` writes such a folder next to the benchmark,
made to behave like an off-the-shelf salient-object detector rather than like the ground truth.
The imperfection model (:class:`SaliencySpec`, decided and measured before any segmentation result
was seen; its quality is published in ``reports/benchmark.md``):

- every object (connected region of one class) is salient at a level drawn in ``object_level``;
- with ``miss_prob`` an object is *missed* (level in ``missed_level``);
- with ``partial_prob`` it is *partly covered*: a straight cut through it at a random angle keeps
  one side salient and dims the other (factor in ``partial_dim``);
- each saturated clutter item of the background is salient with ``clutter_prob`` (level in
  ``clutter_level``): salient clutter;
- context (water, rails) is salient with ``context_prob``, at a level in ``context_level`` modulated by
  a smooth random field, so only parts of it light up;
- boundaries are soft (Gaussian blur, ``blur`` pixels at 96 px, scaled with the image size) and a
  smooth low-amplitude field (``noise``) covers everything.

Map ``i`` of split ``s`` draws from ``numpy.random.default_rng([benchmark seed, s, i, 7919, spec
seed])``: deterministic and independent of the benchmark's own draws.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from tqdm.auto import tqdm

from wsss_lib.data.spec import SPLIT_CODES, BenchmarkSpec, image_id
from wsss_lib.data.synthetic import render_image
from wsss_lib.util.io import read_json, write_json
from wsss_lib.util.making import about_to_make

SALIENCY_VERSION = "1"


@dataclass(frozen=True)
class SaliencySpec:
    """The imperfection model of the embedded saliency detector (see the module docstring)."""

    object_level: tuple[float, float] = (0.75, 1.0)
    miss_prob: float = 0.10
    missed_level: tuple[float, float] = (0.0, 0.15)
    partial_prob: float = 0.25
    partial_dim: tuple[float, float] = (0.1, 0.4)
    clutter_prob: float = 0.4
    clutter_level: tuple[float, float] = (0.35, 0.75)
    context_prob: float = 0.5
    context_level: tuple[float, float] = (0.25, 0.6)
    blur: float = 1.2
    noise: float = 0.06
    seed: int = 0
    version: str = SALIENCY_VERSION

    def digest(self) -> str:
        return hashlib.sha256(repr(sorted(asdict(self).items())).encode()).hexdigest()[:12]


DEFAULT_SALIENCY = SaliencySpec()


def _smooth_field(rng: np.random.Generator, s: int, cells: int = 4) -> np.ndarray:
    """A smooth random field in [0, 1] (bilinear upsampling of a coarse grid)."""
    coarse = (rng.random((cells, cells)) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((s, s), Image.BILINEAR), dtype=np.float64) / 255.0


def render_saliency(bench_spec, split: str, index: int, spec: SaliencySpec = DEFAULT_SALIENCY,
                    rendered=None) -> np.ndarray:
    """The embedded detector's saliency map of image ``index`` of ``split``: ``H x W`` float in [0, 1]."""

    r = rendered if rendered is not None else render_image(bench_spec, split, index)
    s = r.mask.shape[0]
    rng = np.random.default_rng([bench_spec.seed, SPLIT_CODES[split], index, 7919, spec.seed])
    sal = np.zeros(r.mask.shape, dtype=np.float64)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float64)
    for c in sorted(set(np.unique(r.mask).tolist()) - {0}):
        regions, n = ndimage.label(r.mask == c)
        for j in range(1, n + 1):
            obj = regions == j
            u = rng.random()
            if u < spec.miss_prob:
                sal[obj] = np.maximum(sal[obj], rng.uniform(*spec.missed_level))
                continue
            level = np.full(obj.shape, rng.uniform(*spec.object_level))
            if u < spec.miss_prob + spec.partial_prob:
                th = rng.uniform(0, 2 * np.pi)
                proj = xx * np.cos(th) + yy * np.sin(th)
                cut = np.quantile(proj[obj], rng.uniform(0.3, 0.7))
                level[proj > cut] *= rng.uniform(*spec.partial_dim)
            sal[obj] = np.maximum(sal[obj], level[obj])
    for m in r.clutter_masks:
        if rng.random() < spec.clutter_prob:
            sal[m] = np.maximum(sal[m], rng.uniform(*spec.clutter_level))
    if r.context_mask is not None and r.context_mask.any() and rng.random() < spec.context_prob:
        ctx = rng.uniform(*spec.context_level) * _smooth_field(rng, s)
        sal[r.context_mask] = np.maximum(sal[r.context_mask], ctx[r.context_mask])
    sigma = spec.blur * s / 96.0
    if sigma > 0:
        sal = ndimage.gaussian_filter(sal, sigma)
    sal += spec.noise * _smooth_field(rng, s, 6)
    return np.clip(sal, 0.0, 1.0)


def saliency_folder(voc_root: str | os.PathLike, spec: SaliencySpec = DEFAULT_SALIENCY) -> Path:
    """Where the embedded benchmark at ``voc_root`` keeps the saliency maps of ``spec``."""
    return Path(voc_root).resolve().parent.parent / "saliency" / spec.digest()


def ensure_saliency(voc_root: str | os.PathLike, spec: SaliencySpec = DEFAULT_SALIENCY,
                    progress: bool = True) -> Path:
    """The saliency folder of the embedded benchmark at ``voc_root`` (train and val maps), written
    first if missing (into a temp folder renamed into place: never half-written)."""

    voc_root = Path(voc_root)
    info_file = voc_root / "benchmark.json"
    if not info_file.exists():
        raise FileNotFoundError(
            f"{voc_root} is not the embedded benchmark (no benchmark.json): there is no generated saliency for it; "
            "give saliency_root, a folder of greyscale <image id>.png saliency maps (on VOC: the maps the OAA authors "
            "distribute)")
    final = saliency_folder(voc_root, spec)
    if (final / "saliency.json").exists():
        return final
    raw = read_json(info_file)["spec"]
    bench = BenchmarkSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
    about_to_make(f"render the embedded benchmark's saliency maps ({bench.n_train + bench.n_val} images) into {final}")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        for split, n in (("train", bench.n_train), ("val", bench.n_val)):
            for i in tqdm(range(n), desc=f"saliency {split}", leave=False, disable=not progress):
                sal = render_saliency(bench, split, i, spec)
                Image.fromarray(np.rint(sal * 255).astype(np.uint8), mode="L").save(tmp / f"{image_id(split, i)}.png")
        write_json(tmp / "saliency.json", {"spec": asdict(spec), "benchmark": raw})
        try:
            os.replace(tmp, final)
        except OSError:
            if not (final / "saliency.json").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def resolve_saliency_root(saliency_root: str, voc_root: str | os.PathLike, progress: bool = True) -> Path:
    """``saliency_root`` checked to be a folder, or (empty) the embedded benchmark's generated one."""
    if not saliency_root:
        return ensure_saliency(voc_root, progress=progress)
    root = Path(saliency_root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"saliency_root={saliency_root!r}: no such folder; expected a folder of greyscale "
                                "<image id>.png saliency maps")
    return root


def load_saliency(saliency_root: str | os.PathLike, image_id: str, shape: tuple[int, int]) -> np.ndarray:
    """The saliency map of ``image_id`` as ``H x W`` float in [0, 1]; errors name the file."""
    path = Path(saliency_root) / f"{image_id}.png"
    if not path.exists():
        raise FileNotFoundError(f"saliency map {path} not found; expected one greyscale PNG per image, named "
                                "<image id>.png")
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    except Exception as e:
        raise ValueError(f"saliency map {path} could not be decoded ({type(e).__name__}: {e})") from None
    if arr.shape != tuple(shape):
        raise ValueError(f"saliency map {path} is {arr.shape[1]}x{arr.shape[0]} but its image is "
                         f"{shape[1]}x{shape[0]}; expected the image's size")
    return arr


def saliency_quality(saliency_root: str | os.PathLike, layout, beta2: float = 0.3) -> dict:
    """MAE and max F-measure (``beta^2 = 0.3``, the salient-object-detection convention) of a
    saliency folder against the foreground of the split's masks.

    MAE is the mean over images of ``mean |S - G|``; precision and recall are computed per image at
    256 thresholds, averaged over images (images without foreground count for MAE only), and the
    F-measure of the averaged curve is maximized over thresholds."""
    n_t = 256
    prec_sum, rec_sum, n_pr = np.zeros(n_t), np.zeros(n_t), 0
    maes = []
    for i in range(len(layout)):
        gt = layout.load_mask(i)
        fg = (gt > 0) & (gt != 255)
        valid = gt != 255
        sal = load_saliency(saliency_root, layout.ids[i], gt.shape)
        maes.append(float(np.abs(sal - fg)[valid].mean()))
        if not fg.any():
            continue
        q = np.clip(np.rint(sal[valid] * 255).astype(np.int64), 0, 255)
        f = fg[valid]
        # pixels with value >= t are salient at threshold t
        pos = np.bincount(q[f], minlength=n_t)[::-1].cumsum()[::-1]
        allp = np.bincount(q, minlength=n_t)[::-1].cumsum()[::-1]
        prec_sum += np.where(allp > 0, pos / np.maximum(allp, 1), 0.0)
        rec_sum += pos / f.sum()
        n_pr += 1
    p, r = prec_sum / max(n_pr, 1), rec_sum / max(n_pr, 1)
    fm = (1 + beta2) * p * r / np.maximum(beta2 * p + r, 1e-12)
    b = int(np.argmax(fm))
    return {"mae": float(np.mean(maes)), "max_f_measure": float(fm[b]), "best_threshold": b / 255,
            "precision_at_best": float(p[b]), "recall_at_best": float(r[b]), "images": len(layout)}


__all__ = ["DEFAULT_SALIENCY", "SaliencySpec", "ensure_saliency", "load_saliency", "render_saliency",
           "resolve_saliency_root", "saliency_folder", "saliency_quality"]
