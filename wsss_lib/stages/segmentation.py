"""Stage 5b: a segmentation network trained on pseudo labels, scored on the val split's masks.

The papers' own measure (OAA Tables 2 and 3): train a segmentation network on the pseudo labels
of a :mod:`pseudo_labels <wsss_lib.stages.pseudo_labels>` run (pixels labelled 255 are ignored by
the loss), then report its mIoU on the val ground truth. Recipe: SGD, poly schedule, new layers at
10x the learning rate, the engine's resumable loop (flip augmentation by default); evaluation at
each image's own size, optionally multi-scale + flip (``scales``, ``flip``) and dense CRF
(``crf``, :func:`wsss_lib.formulas.crf.dense_crf`).

``fraction`` (OAA Table 3) trains on a random subset of the pseudo-labelled images
(:func:`fraction_subset`: a fixed permutation per ``fraction_seed``, so 20% lies inside 50%); with
``same_steps`` (default) every fraction gets the same number of optimization steps as the full
set (DeepLab trains for a fixed iteration count), so only the amount of data changes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as Fn
from tqdm.auto import tqdm

from wsss_lib.data.transforms import image_frame_to_views, normalize_images
from wsss_lib.data.voc import VOCLayout, VOCSegDataset
from wsss_lib.engine.common import TrainingSet
from wsss_lib.engine.config import TrainConfig, check_crop
from wsss_lib.engine.loop import Batch, LoopConfig
from wsss_lib.engine.resources import resource_metrics
from wsss_lib.figures.plots import confusion_figure, save_figure
from wsss_lib.formulas.crf import crf_available, dense_crf
from wsss_lib.formulas.label_rules import IGNORE, read_label_png, write_label_png
from wsss_lib.formulas.metrics import confusion_matrix, iou_from_confusion
from wsss_lib.models.segnet import SEG_BACKBONES, SEG_NETWORKS, build_segnet
from wsss_lib.models.weights import weights_for
from wsss_lib.runs.folders import write_metrics
from wsss_lib.stages.base import RunContext
from wsss_lib.stages.pseudo_labels import LABEL_FOLDER
from wsss_lib.stages.training import TrainingStage
from wsss_lib.util.io import read_json, write_json


def fraction_subset(n: int, fraction: float, seed: int) -> list[int]:
    """The indices (sorted) of ``round(fraction * n)`` images (at least one) drawn without
    replacement: the first ones of a permutation fixed by ``seed``, so the subsets of one seed are
    nested (20% inside 50% inside 80%) and the same on every run."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction={fraction!r} is invalid: expected a number in (0, 1]")
    perm = np.random.default_rng([seed, 31337]).permutation(n)
    return sorted(perm[:max(1, int(round(fraction * n)))].tolist())


class SubsetDataset(torch.utils.data.Dataset):
    """Some samples of a dataset; each keeps its ``index`` in the full split."""

    def __init__(self, base, indices: list[int]) -> None:
        self.base, self.indices = base, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, j: int) -> dict:
        return self.base[self.indices[j]]


class PseudoLabelSet:
    """The pseudo-label maps of a split (from a ``SegmentationClassPseudo`` folder), rendered into
    training views with the views' own geometry (nearest neighbour; outside the image = 255). Kept as
    uint8, one byte a pixel (VOC train_aug: about 2 GB, where int64 took 16 GB)."""

    def __init__(self, folder, layout: VOCLayout, indices: list[int]) -> None:
        self.maps: dict[int, torch.Tensor] = {}
        for i in indices:
            path = folder / f"{layout.ids[i]}.png"
            if not path.exists():
                raise FileNotFoundError(f"pseudo label {path} not found: the pseudo-label run is incomplete")
            self.maps[i] = torch.from_numpy(np.ascontiguousarray(read_label_png(path), dtype=np.uint8))

    def views(self, indices: list[int], geo: torch.Tensor, size: int) -> torch.Tensor:
        """The labels of dataset images ``indices`` (host-side ints) in the views ``geo``."""
        idx = [int(i) for i in indices]
        shapes = {tuple(self.maps[i].shape) for i in idx}
        pin = geo.device.type == "cuda"
        if len(shapes) == 1:
            lab = torch.stack([self.maps[i] for i in idx])
            return self._render((lab.pin_memory() if pin else lab).to(geo.device, non_blocking=True), geo, size)
        return torch.cat([self._render(self.maps[i][None].to(geo.device), g[None], size) for i, g in zip(idx, geo)])

    @staticmethod
    def _render(lab: torch.Tensor, geo: torch.Tensor, size: int) -> torch.Tensor:
        shifted = lab.float()[:, None] + 1  # 0 = outside the image after sampling (float: uint8 255 + 1 wraps)
        out = image_frame_to_views(shifted, geo, (size, size), mode="nearest")[:, 0].long() - 1
        return torch.where(out < 0, torch.full_like(out, IGNORE), out)


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pixel-wise cross entropy with 255 ignored, logits upsampled (bilinear) to the target's size;
    the mean over labelled pixels (0 when a batch has none, without a host synchronisation)."""
    if logits.shape[-2:] != target.shape[-2:]:
        logits = Fn.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    total = Fn.cross_entropy(logits.float(), target, ignore_index=IGNORE, reduction="sum")
    return total / (target != IGNORE).sum().clamp_min(1)


@torch.no_grad()
def predict_probs(model, image: torch.Tensor, scales=(1.0,), flip: bool = False) -> torch.Tensor:
    """Class probabilities ``B x C x H x W`` at the images' size (uint8 ``B x 3 x H x W`` in),
    averaged over ``scales`` and, with ``flip``, the mirrored images."""
    x = normalize_images(image)
    h, w = x.shape[-2:]
    acc = 0
    for s in scales:
        xs = x if s == 1 else Fn.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)
        for mirrored in ((False, True) if flip else (False,)):
            xi = xs.flip(-1) if mirrored else xs
            logit = model(xi).float()
            logit = Fn.interpolate(logit, size=(h, w), mode="bilinear", align_corners=False)
            acc = acc + (logit.flip(-1) if mirrored else logit).softmax(1)
    return acc / (len(scales) * (2 if flip else 1))


#: the output stride of every segmentation network (small, DeepLab-LargeFOV, DeepLabv3: 8)
SEG_STRIDE = 8


@dataclass
class SegmentationConfig(TrainConfig):
    """Segmentation training on pseudo labels (defaults: the embedded benchmark on CPU)."""

    network: str = "small"  # see wsss_lib.models.segnet.SEG_NETWORKS
    epochs: int = 6
    batch_size: int = 16
    lr: float = 0.01
    fraction: float = 1.0  # share of the pseudo-labelled training images used (OAA Table 3)
    fraction_seed: int = -1  # -1: the run's seed
    same_steps: bool = True  # every fraction trains for the full set's number of steps
    scales: tuple[float, ...] = (1.0,)  # inference scales (e.g. 0.5, 0.75, 1, 1.25, 1.5)
    flip: bool = False  # inference also on mirrored images
    crf: bool = False  # dense CRF on the probabilities (pydensecrf2)
    n_examples: int = 8  # val predictions kept for the figure
    pseudo_params: dict = field(default_factory=dict)  # the pseudo-label stage's parameters when pseudo_run is empty

    def validate(self) -> "SegmentationConfig":
        super().validate()
        self.check("network", self.network in SEG_NETWORKS, f"one of {', '.join(SEG_NETWORKS)}")
        self.check_number("fraction", 0.0, 1.0, closed_lo=False)
        check_crop(self, SEG_STRIDE, f"network {self.network!r}")
        self.check("fraction_seed", isinstance(self.fraction_seed, int) and self.fraction_seed >= -1,
                   "an integer >= 0, or -1 (the run's seed)")
        try:
            sc = tuple(float(s) for s in self.scales)
        except (TypeError, ValueError):
            sc = ()
        self.check("scales", bool(sc) and all(0.25 <= s <= 4 for s in sc), "a list of scales in [0.25, 4]")
        self.scales = sc
        for name in ("same_steps", "flip", "crf"):
            self.check(name, isinstance(getattr(self, name), bool), "True or False")
        self.check_int("n_examples")
        self.check("pseudo_params", isinstance(self.pseudo_params, dict), "a mapping of pseudo-label parameters")
        if self.crf:

            self.check("crf", crf_available(), "False: the package pydensecrf2 is not installed here")
        return self


class SegmentationStage(TrainingStage):
    name = "segmentation"
    prefix = "seg"
    Config = SegmentationConfig
    upstream = {"pseudo_run": "pseudo_labels"}
    upstream_params_field = {"pseudo_run": "pseudo_params"}
    #: the attention runs made for it start from the same kind of weights (pretrained or from scratch)
    inherits = ("pretrained",)
    splits = ("train", "val")
    main_metrics = ("seg_miou", "pseudo_miou")
    quick_note = "2 epochs on 48 images: the network is barely trained"
    notebook = "05_pseudo_labels_segmentation.ipynb"
    outputs = ("metrics.json", "evaluation.json", "checkpoint.pt")
    display_only = ("pseudo_params", "n_examples")
    distributed = True

    def weights(self, cfg: SegmentationConfig, profile):
        bb = SEG_BACKBONES[cfg.network]
        return {bb: weights_for(bb, cfg.pretrained, profile.pretrain)}

    def run_name(self, cfg: SegmentationConfig) -> str:
        return f"seg-{cfg.network}" + (f"-f{cfg.fraction:g}" if cfg.fraction < 1 else "")

    def progress_label(self, cfg: SegmentationConfig) -> str:
        return f"segmentation ({cfg.network})"

    def training_set(self, ctx: RunContext) -> TrainingSet:
        """The pseudo-labelled training images (the run's fraction of them), at the crop size."""
        cfg, layout = ctx.cfg, ctx.layout
        full = VOCSegDataset(layout, with_mask=False, cache_in_memory=len(layout) <= 20000)
        fseed = ctx.seed if cfg.fraction_seed < 0 else cfg.fraction_seed
        subset = fraction_subset(len(layout), cfg.fraction, fseed)
        ctx.state["subset"] = subset
        ctx.state["labels"] = PseudoLabelSet(ctx.upstream["pseudo_run"] / LABEL_FOLDER, layout, subset)
        crop = cfg.crop_size or int(max(full[0]["image"].shape[1:]))
        return TrainingSet(layout, SubsetDataset(full, subset), crop, (crop, crop), layout.num_classes - 1)

    def build_model(self, ctx: RunContext):
        cfg = ctx.cfg
        return build_segnet(cfg.network, ctx.layout.num_classes, ctx.weights.get(SEG_BACKBONES[cfg.network]))

    def training_step(self, ctx: RunContext, model):
        labels, crop = ctx.state["labels"], ctx.ts.crop

        def step(b: Batch) -> torch.Tensor:
            return segmentation_loss(b.model(b.views), labels.views(b.host_indices, b.geo, crop))
        return step, {}

    def loop(self, ctx: RunContext) -> LoopConfig:
        cfg, loop = ctx.cfg, super().loop(ctx)
        n = len(ctx.state["subset"])
        if cfg.same_steps and cfg.fraction < 1:  # the full set's number of steps
            steps = cfg.epochs * math.ceil(len(ctx.layout) / cfg.batch_size)
            loop.epochs = max(1, round(steps / math.ceil(n / cfg.batch_size)))
        return loop

    def score(self, ctx: RunContext, model, train_info: dict) -> None:
        """Val mIoU (:meth:`evaluate`) with the pseudo labels' quality and the training's figures."""
        cfg, subset, history = ctx.cfg, ctx.state["subset"], train_info["history"]
        t0 = time.perf_counter()
        epochs = self.loop(ctx).epochs
        ev = self.evaluate(ctx, model)
        pseudo_metrics = read_json(ctx.upstream["pseudo_run"] / "metrics.json")
        metrics = {**ev.pop("metrics"), **{k: v for k, v in pseudo_metrics.items() if k.startswith("pseudo_")},
                   "train_images": float(len(subset)), "train_epochs": float(epochs),
                   "train_steps": float(epochs * math.ceil(len(subset) / cfg.batch_size)),
                   "train_seconds": train_info["train_seconds"], "final_loss": history[-1]["loss"],
                   "first_epoch_loss": history[0]["loss"]}
        write_json(ctx.out / "evaluation.json", {**ev, "history": history, "train_indices": subset})
        metrics["eval_seconds"] = time.perf_counter() - t0
        metrics.update(resource_metrics(ctx.out, len(subset)))
        write_metrics(ctx.out, metrics)

    def evaluate(self, ctx: RunContext, model) -> dict:
        """Val mIoU, per-class IoU, confusion matrix (and figure); predictions as palette PNGs."""

        cfg = ctx.cfg
        val = VOCLayout(ctx.root, "val")
        data = VOCSegDataset(val, with_mask=True)
        k1 = val.num_classes
        cm = np.zeros((k1, k1), dtype=np.int64)
        pred_dir = ctx.out / "SegmentationClassPred"
        pred_dir.mkdir(exist_ok=True)
        was = model.training
        model.eval()
        for i in tqdm(range(len(data)), desc="segmentation val", leave=False, disable=not ctx.progress):
            s = data[i]
            probs = predict_probs(model, s["image"][None].to(ctx.device), cfg.scales, cfg.flip)[0].cpu()
            if cfg.crf:

                probs = torch.from_numpy(dense_crf(s["image"].permute(1, 2, 0).numpy(), probs.numpy()))
            pred = probs.argmax(0)
            cm += confusion_matrix(pred, s["mask"], k1)
            write_label_png(pred_dir / f"{val.ids[i]}.png", pred.numpy().astype(np.uint8))
        model.train(was)
        iou = iou_from_confusion(cm)
        names = list(val.class_names)
        save_figure(confusion_figure(cm, names, title=f"segmentation on val: mIoU {np.nanmean(iou):.3f}"),
                    ctx.out / "confusion.png")
        metrics = {"seg_miou": float(np.nanmean(iou)), "seg_pixel_accuracy": float(np.trace(cm) / max(cm.sum(), 1))}
        metrics.update({f"seg_iou_{n}": float(v) for n, v in zip(names, iou) if np.isfinite(v)})
        return {"metrics": metrics, "class_names": names, "confusion": cm.tolist(),
                "per_class_iou": [None if np.isnan(v) else float(v) for v in iou],
                "scales": list(cfg.scales), "flip": cfg.flip, "crf": cfg.crf}


STAGE = SegmentationStage()

__all__ = ["PseudoLabelSet", "SegmentationConfig", "SegmentationStage", "STAGE", "SubsetDataset", "fraction_subset",
           "predict_probs", "segmentation_loss"]
