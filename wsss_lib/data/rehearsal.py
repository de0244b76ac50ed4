"""A PASCAL VOC 2012 + SBD folder at VOC's own size, written by the suite: the rehearsal of the research
path where the real dataset cannot be downloaded.

    python -m wsss_lib.data.rehearsal OUT --fraction 0.01

writes, under ``OUT``:

- ``VOCdevkit/VOC2012/``: ``JPEGImages/<id>.jpg`` (variable sizes drawn from VOC's: the long side
  500 px for 97% of the images, landscape for 70%, the short side mostly 375 or 333 px), the
  ``SegmentationClass/<id>.png`` masks of the VOC segmentation subset (palette PNGs of class indices,
  255 on a 5 px band along every object's border, as VOC's), ``ImageSets/Segmentation/{train,val,
  trainval}.txt``;
- ``benchmark_RELEASE/dataset/``: SBD's ``cls/<id>.mat`` (``GTcls.Segmentation``, no border band,
  as SBD) for every image of SBD's ``train.txt``/``val.txt``; with VOC's train the union minus VOC's
  val is ``train_aug`` (:class:`wsss_lib.data.voc.VOCLayout` builds it from these lists);
- ``saliency/<id>.png``: a greyscale saliency map per image (the objects, blurred, with noise), the
  folder the pseudo-label stage takes as ``saliency_root``.

The counts are VOC's (train 1,464, val 1,449, SBD train 8,498 and val 2,857; train_aug 10,582) times
``--fraction``; the 20 classes appear with roughly VOC 2012 train's per-class image frequencies
(:data:`CLASS_WEIGHTS`: person in about 30% of the images, the others 4-10%), one to three classes
an image. The pictures are simple (tinted shapes with a texture on a textured background): they
rehearse the sizes, formats, lists and memory of VOC, not its difficulty. Deterministic in ``--seed``.
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import savemat


#: VOC 2012's list sizes: the segmentation train and val, SBD's train and val (train_aug: 10,582)
VOC_COUNTS = {"voc_train": 1464, "voc_val": 1449, "sbd_train": 8498, "sbd_val": 2857}

#: relative frequency of each VOC class among images (roughly VOC 2012 train's images per class)
CLASS_WEIGHTS = np.array([88, 65, 105, 78, 87, 78, 128, 131, 148, 64, 82, 121, 68, 81, 442, 82, 63, 93, 83, 84],
                         dtype=np.float64)

def voc_palette() -> list[int]:
    """VOC's palette for class indices (the standard bit-interleaved colour map), 255 as cream."""
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    pal[255 * 3:256 * 3] = [224, 224, 192]
    return pal


PALETTE = voc_palette()


@dataclass(frozen=True)
class Counts:
    """How many images each list of the rehearsal holds (VOC's counts times the fraction, at least 2).
    SBD's lists share images with VOC's as the real ones do: SBD train holds most of VOC train, and
    some of VOC val (which train_aug then leaves out)."""

    voc_train: int
    voc_val: int
    sbd_train: int
    sbd_val: int

    @classmethod
    def of(cls, fraction: float) -> "Counts":
        if not 0 < fraction <= 1:
            raise ValueError(f"--fraction must be in (0, 1], got {fraction}")
        return cls(**{k: max(2, round(v * fraction)) for k, v in VOC_COUNTS.items()})


def image_size(rng: np.random.Generator) -> tuple[int, int]:
    """``(height, width)`` from VOC's distribution: long side 500 (97%), landscape (70%), short side
    375 (45%), 333 (20%) or uniform in 200-500."""
    long = 500 if rng.random() < 0.97 else int(rng.integers(200, 500))
    u = rng.random()
    short = 375 if u < 0.45 else 333 if u < 0.65 else int(rng.integers(200, 501))
    short = min(short, long)
    return (short, long) if rng.random() < 0.7 else (long, short)


def draw(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """``(image uint8 H x W x 3, mask uint8 H x W, classes)``: one to three classes, each one or two
    tinted, textured ellipses or boxes on a textured background; later objects occlude earlier ones."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.empty((h, w, 3), np.float32)
    base = rng.uniform(60, 200, 3)
    for k in range(3):
        img[..., k] = base[k] + 25 * np.sin(xx / rng.uniform(20, 80) + rng.uniform(0, 6)) * np.cos(yy / rng.uniform(20, 80))
    mask = np.zeros((h, w), np.uint8)
    n = int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))
    classes = sorted(set(int(c) + 1 for c in rng.choice(20, size=n, replace=False, p=CLASS_WEIGHTS / CLASS_WEIGHTS.sum())))
    for c in classes:
        for _ in range(int(rng.integers(1, 3))):
            cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
            ry, rx = rng.uniform(0.1, 0.35) * h, rng.uniform(0.1, 0.35) * w
            inside = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1) if rng.random() < 0.6 else \
                (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
            tint = np.array(PALETTE[3 * c:3 * c + 3], np.float32) * 0.7 + 40
            stripes = 30 * np.sin((xx * np.cos(c) + yy * np.sin(c)) / (3 + c % 5))
            img[inside] = tint + stripes[inside, None]
            mask[inside] = c
    img += rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), mask, classes


def border_band(mask: np.ndarray, width: int = 5) -> np.ndarray:
    """VOC's ignore band: 255 on the pixels within ``width // 2`` of a change of label."""
    out = mask.copy()
    r = width // 2
    edge = np.zeros(mask.shape, bool)
    edge[:, 1:] |= mask[:, 1:] != mask[:, :-1]
    edge[1:, :] |= mask[1:, :] != mask[:-1, :]
    grown = edge.copy()
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            grown |= np.roll(np.roll(edge, dy, 0), dx, 1)
    out[grown] = 255
    return out


def saliency_map(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """A greyscale saliency map: the objects at about 220, the background at about 20, a blurred edge
    and noise (a plausible, imperfect saliency detector's output)."""
    fg = (mask > 0).astype(np.float32)
    k = 9
    pad = np.pad(fg, k, mode="edge")
    blurred = np.zeros_like(fg)
    for dy in range(-k, k + 1, 3):
        for dx in range(-k, k + 1, 3):
            blurred += pad[k + dy:k + dy + fg.shape[0], k + dx:k + dx + fg.shape[1]]
    blurred /= len(range(-k, k + 1, 3)) ** 2
    s = 20 + 200 * blurred + rng.normal(0, 10, fg.shape)
    return np.clip(s, 0, 255).astype(np.uint8)


def write_bytes(path: Path, data: bytes) -> None:
    """Write a file of the rehearsal (its folder made; the whole folder is renamed into place at the
    end, so single files need no atomic write)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode())


def _png(array: np.ndarray, palette: bool) -> bytes:
    im = Image.fromarray(array, mode="P" if palette else "L")
    if palette:
        im.putpalette(PALETTE)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def plan_ids(counts: Counts) -> dict[str, list[str]]:
    """The ids of each list, in VOC's naming (``2007_000000``...). SBD train holds 85% of VOC train
    and a tenth of VOC val (so train_aug must leave those out); SBD val holds the rest of SBD's own."""
    n_voc = counts.voc_train + counts.voc_val
    voc = [f"2007_{i:06d}" for i in range(n_voc)]
    voc_train, voc_val = voc[:counts.voc_train], voc[counts.voc_train:]
    shared_train = voc_train[:int(0.85 * len(voc_train))]
    shared_val = voc_val[:max(1, len(voc_val) // 10)]
    own = max(0, counts.sbd_train - len(shared_train) - len(shared_val))
    sbd_train = shared_train + shared_val + [f"2008_{i:06d}" for i in range(own)]
    sbd_val = [f"2009_{i:06d}" for i in range(counts.sbd_val)]
    return {"voc_train": voc_train, "voc_val": voc_val, "sbd_train": sbd_train, "sbd_val": sbd_val}


def write_rehearsal(out: str | Path, fraction: float, seed: int = 0, progress: bool = True) -> Path:
    """Write the rehearsal folder (module docstring) into ``out`` (made, or refused when it holds
    anything); returns ``out``. Written into ``out.partial`` and renamed at the end: a killed run
    leaves no half folder under the final name."""
    out = Path(out)
    counts = Counts.of(fraction)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; give a new folder for the rehearsal")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    voc = tmp / "VOCdevkit" / "VOC2012"
    sbd = tmp / "benchmark_RELEASE" / "dataset"
    ids = plan_ids(counts)
    voc_set = set(ids["voc_train"]) | set(ids["voc_val"])
    every = list(dict.fromkeys(ids["voc_train"] + ids["voc_val"] + ids["sbd_train"] + ids["sbd_val"]))
    sbd_set = set(ids["sbd_train"]) | set(ids["sbd_val"])
    rng = np.random.default_rng(seed)
    bar = every
    if progress:
        from tqdm.auto import tqdm  # lazy: heavy: only a terminal run draws a bar

        bar = tqdm(every, desc="rehearsal images", unit="image")
    for iid in bar:
        h, w = image_size(rng)
        img, mask, _ = draw(rng, h, w)
        write_bytes(voc / "JPEGImages" / f"{iid}.jpg", _jpeg(img))
        if iid in voc_set:
            write_bytes(voc / "SegmentationClass" / f"{iid}.png", _png(border_band(mask), palette=True))
        if iid in sbd_set:
            buf = io.BytesIO()
            savemat(buf, do_compression=True, mdict={"GTcls": {"Segmentation": mask, "CategoriesPresent": np.unique(mask[mask > 0])}})
            write_bytes(sbd / "cls" / f"{iid}.mat", buf.getvalue())
        write_bytes(tmp / "saliency" / f"{iid}.png", _png(saliency_map(rng, mask), palette=False))
    lists = voc / "ImageSets" / "Segmentation"
    write_text(lists / "train.txt", "\n".join(ids["voc_train"]) + "\n")
    write_text(lists / "val.txt", "\n".join(ids["voc_val"]) + "\n")
    write_text(lists / "trainval.txt", "\n".join(ids["voc_train"] + ids["voc_val"]) + "\n")
    write_text(sbd / "train.txt", "\n".join(ids["sbd_train"]) + "\n")
    write_text(sbd / "val.txt", "\n".join(ids["sbd_val"]) + "\n")
    train_aug = sorted((set(ids["sbd_train"]) | set(ids["sbd_val"]) | set(ids["voc_train"])) - set(ids["voc_val"]))
    write_text(tmp / "README.txt", f"A VOC 2012 + SBD rehearsal folder written by python -m wsss_lib.data.rehearsal "
               f"(fraction {fraction}, seed {seed}): train {len(ids['voc_train'])}, val {len(ids['voc_val'])}, "
               f"SBD train {len(ids['sbd_train'])}, SBD val {len(ids['sbd_val'])}, train_aug {len(train_aug)} images.\n"
               "data_root=VOCdevkit/VOC2012, sbd_root=benchmark_RELEASE/dataset, saliency_root=saliency\n")
    if out.exists():
        out.rmdir()
    tmp.rename(out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m wsss_lib.data.rehearsal", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="the folder to write (new or empty)")
    ap.add_argument("--fraction", type=float, default=0.01, help="share of VOC's list sizes, in (0, 1] (default 0.01)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        counts = Counts.of(args.fraction)
        out = write_rehearsal(args.out, args.fraction, args.seed)
    except (ValueError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{out}: VOC train {counts.voc_train}, val {counts.voc_val}, SBD train {counts.sbd_train}, "
          f"val {counts.sbd_val}; see {out / 'README.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["CLASS_WEIGHTS", "Counts", "PALETTE", "VOC_COUNTS", "border_band", "draw", "image_size", "plan_ids",
           "saliency_map", "voc_palette", "write_rehearsal"]
