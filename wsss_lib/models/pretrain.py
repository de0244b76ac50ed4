"""Pretraining the ``tiny`` backbone on a generated pretraining task: the embedded counterpart of the
ImageNet weights the papers start from.

The papers fine-tune ImageNet-pretrained networks, so their attention means something from the
first epoch. Our ``tiny`` backbone gets the same treatment from a *pretraining task* that is disjoint
from the benchmark's 8 classes: single-label images of one shape (triangle, square, cross, star,
crescent, L) filled with one texture (solid, stripes, checker, dots) in a random colour, at a random
size, position and angle, on the benchmark's cluttered backgrounds: 24 classes, none of them an
ellipse body or a disc part. Colour carries no class information here, as most of ImageNet's
classes do not hinge on one hue.

Pretraining is deterministic per :class:`PretrainSpec` (seeded data, seeded order, single-process
loop) and cached under ``<cache>/pretrained/tiny-<spec digest>/`` (``weights.pt`` and
``pretrain.json``: pretraining-task accuracy, time, weights digest). :func:`ensure_tiny_pretrained`
returns the cache when it is there and makes it otherwise (never downloads anything), with a
progress bar; :func:`wsss_lib.models.backbones.build_backbone` calls it for ``pretrained=True``.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as Fn
from filelock import FileLock
from torch import nn
from tqdm.auto import tqdm

from wsss_lib.data.drawing import background, hsv_to_rgb
from wsss_lib.data.spec import PART_HUES
from wsss_lib.data.transforms import normalize_images
from wsss_lib.formulas.evaluation import mean_average_precision
from wsss_lib.models.backbones import tiny_backbone
from wsss_lib.util.io import read_json, write_json
from wsss_lib.util.making import about_to_make
from wsss_lib.util.paths import default_cache_dir

SHAPES = ("triangle", "square", "cross", "star", "crescent", "ell")
TEXTURES = ("solid", "stripes", "checker", "dots")
#: class k = (shape k // 4, texture k % 4)
SHAPE_CLASSES = tuple(f"{s}/{t}" for s in SHAPES for t in TEXTURES)
#: the ``regions`` task: class k = (hue k // 6 of the benchmark's four part hues, pattern k % 6)
REGION_PATTERNS = ("solid", "ring", "checker", "bars", "dots", "diagonal")
REGION_CLASSES = tuple(f"hue{h}/{p}" for h in range(4) for p in REGION_PATTERNS)
PRETRAIN_TASKS = {"shapes": SHAPE_CLASSES, "regions": REGION_CLASSES}
PRETRAIN_VERSION = "1"


@dataclass(frozen=True)
class PretrainSpec:
    """Everything that determines the pretrained weights; its digest names the cache folder."""

    n_train: int = 8000
    n_heldout: int = 2000
    size: int = 64
    epochs: int = 8
    batch_size: int = 64
    lr: float = 0.05
    weight_decay: float = 5e-4
    width: int = 32
    seed: int = 0
    version: str = PRETRAIN_VERSION
    #: ``shapes``: the first pretraining task (shape x texture, colour random: no hue carries a class);
    #: ``regions``: the region vocabulary of benchmark version 2 (:data:`REGION_CLASSES`: four hues x six
    #: patterns, drawn on discs, squares and bands next to unlabelled bodies), none of its classes a
    #: benchmark class, as ImageNet holds the parts VOC's classes are made of but not VOC's images
    task: str = "shapes"

    def __post_init__(self) -> None:
        if self.task not in PRETRAIN_TASKS:
            raise ValueError(f"PretrainSpec.task must be one of {', '.join(PRETRAIN_TASKS)}, got {self.task!r}")

    def fields(self) -> dict:
        """The spec's fields; ``task`` only when it is not the first one, so every ``shapes`` spec keeps
        the digest (cache folder, run identities) it had before the option existed."""
        d = asdict(self)
        if self.task == "shapes":
            d.pop("task")
        return d

    def digest(self) -> str:
        return hashlib.sha256(repr(sorted(self.fields().items())).encode()).hexdigest()[:12]

    @property
    def classes(self) -> tuple[str, ...]:
        return PRETRAIN_TASKS[self.task]


#: the default pretraining task (the quick profile's tiny one is in :mod:`wsss_lib.runs.profile`)
DEFAULT_PRETRAIN = PretrainSpec()


# -- the pretraining task --------------------------------------------------------------------------------
def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    """``shape`` of radius ``r`` in the rotated frame (u, v) centred on the object."""
    if shape == "triangle":
        return (v >= -0.5 * r) & (np.abs(u) <= (r - v) / math.sqrt(3)) & (v <= r)
    if shape == "square":
        return (np.abs(u) <= 0.75 * r) & (np.abs(v) <= 0.75 * r)
    if shape == "cross":
        return ((np.abs(u) <= 0.3 * r) & (np.abs(v) <= r)) | ((np.abs(v) <= 0.3 * r) & (np.abs(u) <= r))
    if shape == "star":
        ang = np.arctan2(v, u)
        rad = np.hypot(u, v)
        return rad <= r * (0.55 + 0.45 * np.cos(5 * ang) ** 2)
    if shape == "crescent":
        return (np.hypot(u, v) <= r) & (np.hypot(u - 0.45 * r, v) > 0.8 * r)
    if shape == "ell":
        return (((u >= -0.8 * r) & (u <= -0.2 * r)) & (np.abs(v) <= 0.9 * r)) | \
               ((v >= 0.3 * r) & (v <= 0.9 * r) & (u >= -0.8 * r) & (u <= 0.8 * r))
    raise ValueError(f"unknown shape {shape!r}")


def _texture(texture: str, u: np.ndarray, v: np.ndarray, period: float) -> np.ndarray:
    """Where the texture is dark (bool)."""
    if texture == "solid":
        return np.zeros(u.shape, dtype=bool)
    if texture == "stripes":
        return (np.floor(u / period) % 2) == 0
    if texture == "checker":
        return ((np.floor(u / period) + np.floor(v / period)) % 2) == 0
    if texture == "dots":
        return (np.hypot((u % (2 * period)) - period, (v % (2 * period)) - period) <= 0.45 * period)
    raise ValueError(f"unknown texture {texture!r}")


def _region_pattern(pattern: str, u: np.ndarray, v: np.ndarray, d2: np.ndarray, r: float, cell: float) -> np.ndarray:
    """Where a ``regions``-task primitive is dark: the benchmark's part patterns (ring: the inner
    disc; checker, bars, dots, diagonal: cells of size ``cell``)."""
    if pattern == "solid":
        return np.zeros(u.shape, dtype=bool)
    if pattern == "ring":
        return d2 <= (0.5 * r) ** 2
    if pattern == "checker":
        return ((np.floor(u / cell) + np.floor(v / cell)) % 2) == 0
    if pattern == "bars":
        return (np.floor(u / cell) % 2) == 0
    if pattern == "dots":
        return ((u / cell) % 2 - 1) ** 2 + ((v / cell) % 2 - 1) ** 2 <= 0.45
    if pattern == "diagonal":
        return (np.floor((u + v) / cell) % 2) == 0
    raise ValueError(f"unknown pattern {pattern!r}")


def _render_region_image(rng: np.random.Generator, img: np.ndarray, s: int, yy: np.ndarray, xx: np.ndarray) -> int:
    """The ``regions`` task: one or two unlabelled striped bodies (the benchmark's body appearance),
    then one primitive (disc, square or band) of a class's hue and pattern; returns the class."""

    for _ in range(int(rng.integers(1, 3))):
        a = rng.uniform(0.15, 0.4) * s
        b = a * rng.uniform(0.5, 0.65)
        cx, cy, th = rng.uniform(0, s), rng.uniform(0, s), rng.uniform(0, 2 * np.pi)
        u = (xx - cx) * np.cos(th) + (yy - cy) * np.sin(th)
        v = -(xx - cx) * np.sin(th) + (yy - cy) * np.cos(th)
        body = (u / a) ** 2 + (v / b) ** 2 <= 1.0
        base = np.array([140.0, 115.0, 90.0]) + rng.normal(0, 22, size=3)
        img[body] = base + (16.0 * np.sin(2 * np.pi * u / rng.uniform(3.5, 5.0)))[body, None]
    k = int(rng.integers(0, len(REGION_CLASSES)))
    hue, pattern = k // len(REGION_PATTERNS), REGION_PATTERNS[k % len(REGION_PATTERNS)]
    r = rng.uniform(0.08, 0.25) * s
    cx, cy = rng.uniform(0.25 * s, 0.75 * s, size=2)
    th = rng.uniform(0, 2 * np.pi)
    u = (xx - cx) * np.cos(th) + (yy - cy) * np.sin(th)
    v = -(xx - cx) * np.sin(th) + (yy - cy) * np.cos(th)
    d2 = u ** 2 + v ** 2
    shape = int(rng.integers(0, 3))
    m = d2 <= r * r if shape == 0 else ((np.abs(u) <= r) & (np.abs(v) <= r) if shape == 1 else
                                        (np.abs(u) <= 0.45 * r) & (np.abs(v) <= 1.6 * r))
    col = hsv_to_rgb(PART_HUES[hue] + rng.normal(0, 6), rng.uniform(0.75, 0.95), rng.uniform(0.8, 0.95))
    img[m] = col
    img[m & _region_pattern(pattern, u, v, d2, r, max(0.4 * r, 1.0))] = 0.25 * col
    return k


def render_pretrain_image(spec: PretrainSpec, split: str, index: int) -> tuple[np.ndarray, int]:
    """Image ``index`` of ``split`` (``train`` or ``heldout``) and its class; deterministic."""
    code = {"train": 1, "heldout": 2}[split]
    rng = np.random.default_rng([spec.seed, 7, code, index])
    s = spec.size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float64)
    img = background(rng, s, yy, xx)
    if spec.task == "regions":
        k = _render_region_image(rng, img, s, yy, xx)
        img += rng.normal(0, 5, size=img.shape)
        return np.clip(np.rint(img), 0, 255).astype(np.uint8), k
    k = int(rng.integers(0, len(SHAPE_CLASSES)))
    shape, texture = SHAPES[k // len(TEXTURES)], TEXTURES[k % len(TEXTURES)]
    r = rng.uniform(0.18, 0.34) * s
    cx, cy = rng.uniform(0.3 * s, 0.7 * s, size=2)
    th = rng.uniform(0, 2 * np.pi)
    u = (xx - cx) * np.cos(th) + (yy - cy) * np.sin(th)
    v = -(xx - cx) * np.sin(th) + (yy - cy) * np.cos(th)
    m = _shape_mask(shape, u, v, r)
    col = hsv_to_rgb(rng.uniform(0, 360), rng.uniform(0.4, 0.9), rng.uniform(0.55, 0.95))
    dark = _texture(texture, u, v, rng.uniform(0.12, 0.2) * r * 2)
    img[m] = col
    img[m & dark] = 0.3 * col
    img += rng.normal(0, 5, size=img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), k


def pretrain_split(spec: PretrainSpec, split: str, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """All images of a split as a ``N x 3 x S x S`` uint8 tensor and their labels."""
    n = spec.n_train if split == "train" else spec.n_heldout
    it = range(n)
    if progress:

        it = tqdm(it, desc=f"pretraining task: rendering {split}", leave=False)
    imgs, labels = np.zeros((n, spec.size, spec.size, 3), np.uint8), np.zeros(n, np.int64)
    for i in it:
        imgs[i], labels[i] = render_pretrain_image(spec, split, i)
    return torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels)


# -- training ---------------------------------------------------------------------------------------
class PretrainClassifier(nn.Module):
    """The tiny backbone + global average pooling + a linear layer over the source classes."""

    def __init__(self, width: int = 32, num_classes: int = len(SHAPE_CLASSES)) -> None:
        super().__init__()
        self.backbone = tiny_backbone(width)
        self.fc = nn.Linear(self.backbone.out_channels, num_classes)

    def forward(self, x):
        return self.fc(self.backbone(x).mean((2, 3)))


@torch.no_grad()
def features(backbone: nn.Module, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Globally pooled backbone features of uint8 images (eval mode)."""
    backbone.eval()
    return torch.cat([backbone(normalize_images(images[i:i + batch])).mean((2, 3)) for i in range(0, len(images), batch)])


def probe_accuracy(backbone: nn.Module, images: torch.Tensor, labels: torch.Tensor, fit_share: float = 0.5) -> float:
    """Nearest-class-mean accuracy of standardized pooled features: class means from the first
    ``fit_share`` of the images, accuracy on the rest. A fixed, training-free probe of how much
    class information a backbone's features carry."""
    f = features(backbone, images)
    n = int(len(f) * fit_share)
    mu, sd = f[:n].mean(0), f[:n].std(0) + 1e-6
    f = (f - mu) / sd
    k = int(labels.max()) + 1
    means = torch.stack([f[:n][labels[:n] == c].mean(0) if (labels[:n] == c).any() else torch.full_like(mu, float("inf"))
                         for c in range(k)])
    pred = torch.cdist(f[n:], means).argmin(1)
    return float((pred == labels[n:]).float().mean())


def linear_probe_map(backbone, fit_images: torch.Tensor, fit_labels: np.ndarray, test_images: torch.Tensor,
                     test_labels: np.ndarray, ridge: float = 1.0) -> float:
    """How well a frozen backbone's features name the benchmark's classes: globally pooled features
    (eval mode) of uint8 ``N x 3 x H x W`` images, standardized on the fit images, a ridge regression
    (closed form, penalty ``ridge`` per fit image) onto the ``+-1`` image-level labels (``N x K``),
    scored by classification mAP on the test images. Deterministic and training-free, so a
    pretrained and a random backbone compare on the same footing."""

    with torch.no_grad():
        f_fit = features(backbone, fit_images).double()
        f_test = features(backbone, test_images).double()
    mu, sd = f_fit.mean(0), f_fit.std(0) + 1e-6
    x = torch.cat([(f_fit - mu) / sd, torch.ones(len(f_fit), 1, dtype=torch.float64)], 1)
    y = torch.from_numpy(np.where(np.asarray(fit_labels, bool), 1.0, -1.0))
    eye = torch.eye(x.shape[1], dtype=torch.float64)
    eye[-1, -1] = 0.0  # the bias is not penalized
    w = torch.linalg.solve(x.T @ x + ridge * len(x) * eye, x.T @ y)
    xt = torch.cat([(f_test - mu) / sd, torch.ones(len(f_test), 1, dtype=torch.float64)], 1)
    return mean_average_precision((xt @ w).numpy(), np.asarray(test_labels, bool))


def weights_digest(state: dict) -> str:
    """sha256 of a state dict's tensors (names, dtypes, shapes and bytes, in name order)."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def pretrain_tiny(spec: PretrainSpec = DEFAULT_PRETRAIN, progress: bool = True) -> tuple[dict, dict]:
    """Train :class:`PretrainClassifier` on the pretraining task; returns (backbone state dict, info).

    SGD (momentum 0.9, nesterov), cosine learning rate, horizontal flips, one process; seeded data
    order and initialization, so the same spec gives the same weights on the same machine setup."""
    t0 = time.perf_counter()
    xtr, ytr = pretrain_split(spec, "train", progress)
    xte, yte = pretrain_split(spec, "heldout", progress)
    render_s = time.perf_counter() - t0
    g = torch.Generator().manual_seed(spec.seed)
    torch.manual_seed(spec.seed)
    model = PretrainClassifier(spec.width, len(spec.classes))
    opt = torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=0.9, nesterov=True, weight_decay=spec.weight_decay)
    steps_per_epoch = math.ceil(len(xtr) / spec.batch_size)
    total = spec.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    bar = None
    if progress:

        bar = tqdm(total=total, desc="pretraining tiny backbone on the pretraining task", leave=False)
    history = []
    t1 = time.perf_counter()
    for epoch in range(spec.epochs):
        model.train()
        order = torch.randperm(len(xtr), generator=g)
        flips = torch.rand(len(xtr), generator=g) < 0.5
        tot, n = 0.0, 0
        for i in range(0, len(xtr), spec.batch_size):
            idx = order[i:i + spec.batch_size]
            x = normalize_images(xtr[idx])
            f = flips[idx]
            x[f] = x[f].flip(-1)
            loss = Fn.cross_entropy(model(x), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(idx)
            n += len(idx)
            if bar is not None:
                bar.update(1)
        history.append({"epoch": epoch + 1, "loss": tot / n})
    if bar is not None:
        bar.close()
    train_s = time.perf_counter() - t1
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(normalize_images(xte[i:i + 256])) for i in range(0, len(xte), 256)])
    acc = float((logits.argmax(1) == yte).float().mean())
    state = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    info = {"spec": asdict(spec), "digest": spec.digest(), "classes": list(spec.classes),
            "heldout_accuracy": acc, "chance_accuracy": 1 / len(spec.classes), "history": history,
            "render_seconds": render_s, "train_seconds": train_s, "threads": torch.get_num_threads(),
            "weights_sha256": weights_digest(state), "torch": torch.__version__}
    return state, info


def pretrained_dir(spec: PretrainSpec = DEFAULT_PRETRAIN, cache_dir: str | os.PathLike | None = None) -> Path:
    return Path(cache_dir or default_cache_dir()) / "pretrained" / f"tiny-{spec.digest()}"


def ensure_tiny_pretrained(spec: PretrainSpec = DEFAULT_PRETRAIN, cache_dir: str | os.PathLike | None = None,
                           progress: bool = True) -> Path:
    """The cache folder of ``spec``'s pretrained weights, made first if missing (a few minutes on 2
    cores for the default spec; one process makes it while others wait on a lock). Written to a
    temporary folder and renamed into place, so an interrupted pretraining leaves nothing behind."""

    final = pretrained_dir(spec, cache_dir)
    if (final / "pretrain.json").exists():
        return final
    about_to_make(f"pretrain the tiny backbone on the {spec.task} pretraining task ({spec.n_train} images, {spec.epochs} "
                  f"epochs, width {spec.width}) into {final}")
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final.parent / f".{final.name}.lock")):
        if (final / "pretrain.json").exists():  # made by another process while we waited
            return final
        print(f"pretraining the tiny backbone on the pretraining task ({spec.n_train} images, {spec.epochs} epochs; "
              f"cached in {final})", flush=True)
        state, info = pretrain_tiny(spec, progress)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
        try:
            buf = io.BytesIO()
            torch.save(state, buf)
            (tmp / "weights.pt").write_bytes(buf.getvalue())
            write_json(tmp / "pretrain.json", info)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return final


def load_tiny_pretrained(spec: PretrainSpec = DEFAULT_PRETRAIN, width: int = 32, progress: bool = True) -> dict:
    """The backbone state dict of ``spec`` (cache first, then made here; never downloaded)."""
    if width != spec.width:
        raise ValueError(f"the pretrained tiny backbone has width {spec.width}, asked for width={width}")
    folder = ensure_tiny_pretrained(spec, progress=progress)
    try:
        state = torch.load(folder / "weights.pt", map_location="cpu", weights_only=True)
    except Exception as e:
        raise RuntimeError(f"{folder / 'weights.pt'}: cannot read the pretrained tiny backbone ({e}); delete "
                           f"the folder {folder} and it is made again") from e
    info = read_json(folder / "pretrain.json")
    if weights_digest(state) != info.get("weights_sha256"):
        raise RuntimeError(f"{folder / 'weights.pt'} does not match the digest in pretrain.json; delete the folder "
                           f"{folder} and it is made again")
    return state


__all__ = ["DEFAULT_PRETRAIN", "PretrainSpec", "REGION_CLASSES", "SHAPE_CLASSES", "PRETRAIN_TASKS", "PretrainClassifier",
           "ensure_tiny_pretrained", "features", "load_tiny_pretrained", "pretrain_tiny",
           "linear_probe_map", "pretrained_dir", "probe_accuracy", "render_pretrain_image", "pretrain_split", "weights_digest"]
