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
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from wsss_lib.data.miniature import render_miniature
from wsss_lib.data.render_v1 import render_v1
from wsss_lib.data.spec import (CLASS_NAMES, CONTEXT_OF_CLASS, DEFAULT_SPEC, SPLIT_CODES, BenchmarkSpec, RenderedImage,
                                image_id, voc_colormap)
from wsss_lib.util.io import write_json, write_text
from wsss_lib.util.making import about_to_make
from wsss_lib.util.paths import default_cache_dir

if TYPE_CHECKING:
    import torch

#: benchmark version -> its renderer (a new version is a renderer and a line here)
RENDERERS = {"1": render_v1, "2": render_miniature}


def render_image(spec: BenchmarkSpec, split: str, index: int) -> RenderedImage:
    """Render image ``index`` of ``split`` with the renderer of ``spec.version`` (:data:`RENDERERS`;
    deterministic in ``spec.seed``, split and index)."""
    if split not in SPLIT_CODES:
        raise ValueError(f"split must be one of {sorted(SPLIT_CODES)}, got {split!r}")
    return RENDERERS[spec.version](spec, split, index)


def rendered_set(spec: BenchmarkSpec, split: str, n: int) -> tuple[torch.Tensor, np.ndarray]:
    """The first ``n`` images of ``split`` rendered from ``spec`` (no files) as ``n x 3 x H x W``
    uint8, and their image-level labels (``n x K`` bool)."""
    import torch  # lazy: heavy: this module stays importable without torch

    imgs, labels = [], np.zeros((n, len(CLASS_NAMES)), bool)
    for i in range(n):
        r = render_image(spec, split, i)
        imgs.append(torch.from_numpy(r.image).permute(2, 0, 1))
        present = np.unique(r.mask)
        labels[i, present[present > 0] - 1] = True
    return torch.stack(imgs), labels


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
        from tqdm.auto import tqdm  # lazy: optional: absent on some machines (the except clause says what then)
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
