"""Read PASCAL VOC 2012 (optionally with the SBD ``train_aug`` set) and anything in VOC layout.

One API for real VOC and for the embedded benchmark: :class:`VOCLayout` indexes a split (ids,
image-level multi-hot labels, file paths) and :class:`VOCSegDataset` yields samples::

    {"image": uint8 tensor 3xHxW, "label": float tensor K, "mask": int64 tensor HxW (255 = ignore)
     or None, "id": str, "index": int}

Image-level labels come from the segmentation masks (the classes present, 255 ignored), or from
SBD ``cls/<id>.mat`` files for ``train_aug`` images that have no VOC mask. Every problem with the
data raises :class:`DataError`, naming the file and what was expected; nothing is skipped silently.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy.io import loadmat
from tqdm.auto import tqdm

from wsss_lib.util.io import write_json
from wsss_lib.util.paths import default_cache_dir

VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor")
IGNORE_INDEX = 255

#: every mask this process has read, once, as ``H x W`` uint8 (key: the file, its size and mtime, so an
#: edited file is read again): the scorers of every stage and page share them (VOC train_aug: about
#: 2 GB as uint8, where one int64 copy per scorer was 16 GB)
_MASK_CACHE: dict[tuple[str, int, int], torch.Tensor] = {}


class DataError(ValueError):
    """A data file or folder is missing or not what the VOC layout expects."""


def resolve_voc_root(root: str | os.PathLike) -> Path:
    """Return the folder holding ``JPEGImages/`` given it, ``VOCdevkit/`` or the folder above that."""
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"data_root {str(root)!r} does not exist; expected a VOC 2012 folder "
                        "(with JPEGImages/ and ImageSets/Segmentation/) or the folder holding VOCdevkit/")
    for cand in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (cand / "JPEGImages").is_dir():
            return cand
    raise DataError(f"data_root {str(root)!r} is not in VOC layout: found no JPEGImages/ in it, in "
                    "VOC2012/ or in VOCdevkit/VOC2012/")


def read_class_names(voc: Path) -> tuple[str, ...]:
    """``classes.txt`` (the embedded benchmark writes one) or the 21 VOC names."""
    f = voc / "classes.txt"
    if f.exists():
        names = tuple(line.strip() for line in f.read_text().splitlines() if line.strip())
        if len(names) < 2 or names[0] != "background":
            raise DataError(f"{f}: expected 'background' then one class name a line, got {names[:3]}")
        return names
    return VOC_CLASSES


def _read_id_list(path: Path) -> list[str]:
    if not path.exists():
        raise DataError(f"split list {path} not found; expected a text file with one image id a line")
    ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise DataError(f"split list {path} is empty; expected one image id a line")
    return ids


def load_image(path: Path) -> np.ndarray:
    """Decode an RGB image to ``H x W x 3`` uint8, naming the file on any failure."""
    if not path.exists():
        raise DataError(f"image {path} not found")
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as e:  # PIL raises several types for broken files
        raise DataError(f"image {path} could not be decoded ({type(e).__name__}: {e}); "
                        "expected a readable JPEG/PNG") from None


def load_mask(path: Path, num_classes: int) -> np.ndarray:
    """Read a label PNG (palette or greyscale) as ``H x W`` uint8 and check its values.

    Values must lie in ``0..num_classes-1`` or be 255 (ignore).
    """
    if not path.exists():
        raise DataError(f"mask {path} not found")
    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L"):
                raise DataError(f"mask {path} has mode {im.mode!r}; expected a palette ('P') or "
                                "greyscale ('L') PNG of class indices")
            m = np.asarray(im)
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"mask {path} could not be decoded ({type(e).__name__}: {e})") from None
    bad = np.unique(m[(m >= num_classes) & (m != IGNORE_INDEX)])
    if bad.size:
        raise DataError(f"mask {path} has values {bad.tolist()[:10]} outside the class range "
                        f"0..{num_classes - 1} (255 = ignore)")
    return m


def _load_sbd_mat(path: Path, num_classes: int) -> np.ndarray:

    if not path.exists():
        raise DataError(f"SBD annotation {path} not found")
    try:
        m = loadmat(str(path))["GTcls"]["Segmentation"][0, 0].astype(np.uint8)
    except Exception as e:
        raise DataError(f"SBD annotation {path} could not be read ({type(e).__name__}: {e}); "
                        "expected a .mat file with GTcls.Segmentation") from None
    bad = np.unique(m[(m >= num_classes) & (m != IGNORE_INDEX)])
    if bad.size:
        raise DataError(f"SBD annotation {path} has values {bad.tolist()} outside 0..{num_classes - 1}")
    return m


class VOCLayout:
    """Index of one split of a VOC-layout folder.

    Args:
        root: the VOC2012 folder, VOCdevkit/ or the folder above it.
        split: a list name in ``ImageSets/Segmentation`` (``train``, ``val``...) or ``train_aug``.
        sbd_root: the SBD ``benchmark_RELEASE/dataset`` folder (``cls/``, ``train.txt``,
            ``val.txt``); only needed for ``train_aug`` when there is no
            ``ImageSets/Segmentation/train_aug.txt`` with ``SegmentationClassAug/``.
        label_cache: folder for the derived image-level labels (default: the WSSS cache).
    """

    def __init__(self, root: str | os.PathLike, split: str = "train",
                 sbd_root: str | os.PathLike | None = None,
                 label_cache: str | os.PathLike | None = None) -> None:
        self.root = resolve_voc_root(root)
        self.split = split
        self.class_names = read_class_names(self.root)
        self.num_classes = len(self.class_names)  # including background
        self.sbd_root = Path(sbd_root) if sbd_root else None
        self.ids = self._split_ids()
        self._label_cache = Path(label_cache) if label_cache else None
        self.labels = self._image_labels()

    # -- index -------------------------------------------------------------------------------
    def _split_ids(self) -> list[str]:
        lists = self.root / "ImageSets" / "Segmentation"
        if self.split != "train_aug" or (lists / "train_aug.txt").exists():
            return _read_id_list(lists / f"{self.split}.txt")
        if self.sbd_root is None:
            raise DataError(f"split 'train_aug' needs {lists / 'train_aug.txt'} or sbd_root= "
                            "(the SBD dataset/ folder with cls/, train.txt and val.txt)")
        sbd = _read_id_list(self.sbd_root / "train.txt") + _read_id_list(self.sbd_root / "val.txt")
        voc_train = _read_id_list(lists / "train.txt")
        voc_val = set(_read_id_list(lists / "val.txt"))
        ids = sorted(set(sbd + voc_train) - voc_val)
        return ids

    def __len__(self) -> int:
        return len(self.ids)

    def first(self, n: int) -> "VOCLayout":
        """The same split restricted to its first ``n`` images (in id order); ``n = 0``: all of them."""

        if not n or n >= len(self.ids):
            return self
        sub = copy.copy(self)
        sub.ids, sub.labels = self.ids[:n], self.labels[:n]
        return sub

    def subset(self, indices) -> "VOCLayout":
        """The same split restricted to the images at ``indices`` (in that order)."""

        idx = [int(i) for i in indices]
        bad = [i for i in idx if not 0 <= i < len(self.ids)]
        if bad:
            raise IndexError(f"subset: indices {bad[:5]} are outside split {self.split!r} of {len(self.ids)} images")
        sub = copy.copy(self)
        sub.ids, sub.labels = [self.ids[i] for i in idx], self.labels[idx]
        return sub

    def image_path(self, i: int) -> Path:
        return self.root / "JPEGImages" / f"{self.ids[i]}.jpg"

    def mask_path(self, i: int) -> Path | None:
        iid = self.ids[i]
        for folder in ("SegmentationClassAug", "SegmentationClass") if self.split == "train_aug" \
                else ("SegmentationClass",):
            p = self.root / folder / f"{iid}.png"
            if p.exists():
                return p
        if self.sbd_root is not None and (self.sbd_root / "cls" / f"{iid}.mat").exists():
            return self.sbd_root / "cls" / f"{iid}.mat"
        return None

    def load_mask(self, i: int) -> np.ndarray | None:
        p = self.mask_path(i)
        if p is None:
            return None
        if p.suffix == ".mat":
            return _load_sbd_mat(p, self.num_classes)
        return load_mask(p, self.num_classes)

    def mask_tensor(self, i: int) -> torch.Tensor | None:
        """The mask of image ``i`` as an ``H x W`` uint8 tensor, read once per process and shared
        (:data:`_MASK_CACHE`); ``None`` without a mask. Read-only: callers convert, never edit."""
        p = self.mask_path(i)
        if p is None:
            return None
        st = p.stat()
        key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
        m = _MASK_CACHE.get(key)
        if m is None:
            m = _MASK_CACHE[key] = torch.from_numpy(np.array(self.load_mask(i), dtype=np.uint8))
        return m

    def load_image(self, i: int) -> np.ndarray:
        return load_image(self.image_path(i))

    # -- integrity -----------------------------------------------------------------------------
    def check(self, masks: bool = True, progress: bool = False) -> None:
        """Decode every image (and mask) of the split before any training starts; raise one
        :class:`DataError` that lists *every* bad file (missing, undecodable, mask of another size).
        A successful check is remembered (keyed by the files' sizes and times), so it costs a
        ``stat`` per file on later runs."""

        files = [self.image_path(i) for i in range(len(self))]
        if masks:
            files += [p for p in (self.mask_path(i) for i in range(len(self))) if p is not None]
        stamp = hashlib.sha256()
        for f in files:
            try:
                st = f.stat()
                stamp.update(f"{f}|{st.st_size}|{st.st_mtime_ns}".encode())
            except OSError:
                stamp.update(f"{f}|missing".encode())
        marker = self._cache_file().with_name(f"checked-{stamp.hexdigest()[:16]}")
        if marker.exists():
            return
        bad: list[str] = []
        for i in tqdm(range(len(self)), desc=f"checking {self.split}", disable=not progress, leave=False):
            try:
                img = self.load_image(i)
            except DataError as e:
                bad.append(str(e))
                continue
            if not masks:
                continue
            try:
                m = self.load_mask(i)
            except DataError as e:
                bad.append(str(e))
                continue
            if m is not None and m.shape != img.shape[:2]:
                bad.append(f"mask {self.mask_path(i)} is {m.shape[1]}x{m.shape[0]} but image {self.image_path(i)} "
                           f"is {img.shape[1]}x{img.shape[0]}")
        if bad:
            shown = "\n  ".join(bad[:20])
            more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
            raise DataError(f"{len(bad)} bad file(s) in split {self.split!r} of {self.root} (nothing was trained):"
                            f"\n  {shown}{more}")
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text("ok\n")
        except OSError:
            pass  # a read-only cache only costs time

    # -- labels ------------------------------------------------------------------------------
    def _cache_file(self) -> Path:

        base = self._label_cache or default_cache_dir() / "labels"
        key = hashlib.sha256(f"{self.root.resolve()}|{self.split}|{self.sbd_root}".encode()).hexdigest()[:16]
        return base / f"{key}.json"

    def _image_labels(self) -> np.ndarray:
        """Multi-hot ``N x (num_classes-1)`` bool: foreground classes present in each mask."""
        cache = self._cache_file()
        list_file = self.root / "ImageSets" / "Segmentation" / f"{self.split}.txt"
        stamp = list_file.stat().st_mtime_ns if list_file.exists() else 0
        if cache.exists():
            try:
                blob = json.loads(cache.read_text())
                if blob.get("ids") == self.ids and blob.get("stamp") == stamp:
                    return np.array(blob["labels"], dtype=bool).reshape(len(self.ids), -1)
            except (ValueError, KeyError):
                pass  # a stale or broken cache is rebuilt below
        k = self.num_classes - 1
        labels = np.zeros((len(self.ids), k), dtype=bool)
        for i, iid in enumerate(self.ids):
            m = self.load_mask(i)
            if m is None:
                raise DataError(f"no mask for image id {iid!r} of split {self.split!r} (looked in "
                                f"{self.root / 'SegmentationClass'} and the SBD cls/ folder); "
                                "image-level labels are derived from masks")
            present = np.unique(m)
            present = present[(present > 0) & (present != IGNORE_INDEX)]
            labels[i, present - 1] = True

        try:
            write_json(cache, {"ids": self.ids, "stamp": stamp, "labels": labels.astype(int).tolist()})
        except OSError:
            pass  # a read-only cache only costs time
        return labels


class VOCSegDataset(torch.utils.data.Dataset):
    """Samples of a :class:`VOCLayout` split as tensors (see the module docstring).

    Args:
        layout: the split index.
        with_mask: load masks (needed for evaluation, not for classifier training).
        cache_in_memory: keep decoded images (and masks) after the first read; worth it for the
            embedded benchmark (2,500 images of 96 px are ~70 MB), not for VOC.
    """

    def __init__(self, layout: VOCLayout, with_mask: bool = True, cache_in_memory: bool = False) -> None:
        self.layout = layout
        self.with_mask = with_mask
        self.cache_in_memory = cache_in_memory
        self._cache: dict[int, dict] = {}

    def __len__(self) -> int:
        return len(self.layout)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.layout.class_names

    def __getitem__(self, i: int) -> dict:
        if i in self._cache:
            return dict(self._cache[i])
        img = self.layout.load_image(i)
        mask = None
        if self.with_mask:
            m = self.layout.load_mask(i)
            if m is not None:
                if m.shape != img.shape[:2]:
                    raise DataError(
                        f"mask {self.layout.mask_path(i)} is {m.shape[1]}x{m.shape[0]} but image "
                        f"{self.layout.image_path(i)} is {img.shape[1]}x{img.shape[0]}; expected equal sizes")
                mask = torch.from_numpy(m.astype(np.int64))
        sample = {
            "image": torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))),
            "label": torch.from_numpy(self.layout.labels[i].astype(np.float32)),
            "mask": mask,
            "id": self.layout.ids[i],
            "index": i,
        }
        if self.cache_in_memory:
            self._cache[i] = sample
        return dict(sample)
