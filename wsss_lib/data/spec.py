"""The embedded benchmark's specification: its classes, the code of their discriminative regions, the
context some of them bring, :class:`BenchmarkSpec` (what a benchmark is generated from; its digest
names it), the specs the profiles use, and what a rendered image holds (:class:`RenderedImage`)."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field

import numpy as np

GENERATOR_VERSION = "1"


#: Foreground class names of the embedded benchmark (index 1..8 in masks; 0 is background).
CLASS_NAMES: tuple[str, ...] = ("aster", "barge", "crest", "delta", "ember", "fable", "tram", "halo")


#: Part hue (degrees) and pattern for each class: four hues x two patterns, so neither the colour
#: nor the pattern alone names the class.
PART_HUES = (0.0, 90.0, 180.0, 270.0, 0.0, 90.0, 180.0, 270.0)


PART_PATTERNS = ("solid", "solid", "solid", "solid", "ring", "ring", "ring", "ring")


#: Context drawn with a class (not part of its mask): class index (0-based) -> context name.
CONTEXT_OF_CLASS = {1: "water", 6: "rails"}


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


def image_id(split: str, index: int) -> str:
    return f"{split[0]}{index:06d}"
