"""Stage 3: OAA+, the integral attention model (OAA section 3.3).

The classifier network without GAP and classification loss is trained on the accumulated maps
of a classifier + OAA run (normalized to ``[0, 1]``) as pixel-wise soft labels, with MCE (eq. 6),
the hybrid loss (eqs. 7-9, per class) or the official code's hybrid loss (one normalization over
the classes and pixels of each image). Its attention at inference comes straight from the
class-aware conv (eq. 2).

The recipe (``preset``): ``"paper"`` (default) is the paper's losses with the classifier's network
and the official OAA+ step size (see :data:`PRESETS` and :class:`OAAPlusConfig`); ``"official"``
the official OAA-PyTorch ``train_iam.py``: its loss, Nesterov momentum, weight decay 5e-4 and
N(0, 0.01) new layers. A present class whose accumulated map is all zero (the gate never accepted
it, or its attention was empty in every accepted epoch) takes the classifier run's final CAM as its
target (``empty_target="cam"``), as the official code writes the last epoch's map for pairs never
accumulated, instead of being trained as absent everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from wsss_lib.data.transforms import image_frame_to_views
from wsss_lib.engine.common import build_attention_net, dense_source, infer_attention
from wsss_lib.engine.config import AttentionTrainConfig
from wsss_lib.engine.loop import Batch
from wsss_lib.formulas.accumulation import FUSION_SOURCES
from wsss_lib.formulas.losses import OAA_PLUS_LOSSES
from wsss_lib.runs.attention_io import load_attention
from wsss_lib.stages.base import RunContext
from wsss_lib.stages.training import TrainingStage

#: the upstream classifier's attention sources that can serve as soft labels
SOURCES = (*FUSION_SOURCES, "cam")
#: what a present class whose target map is all zero is trained on: "cam" (the classifier run's final
#: CAM, as the official last-epoch fallback) or "negative" (the all-zero map: absent everywhere)
EMPTY_TARGETS = ("cam", "negative")

#: OAA+'s base learning rate (new layers at 10x / 20x, as the classifier): the official OAA+ step.
#: OAA-PyTorch's train_iam.py trains at lr 1e-3 and *sums* the gradients of its 5 accumulated batches
#: (its loss is not divided by iter_size, where its classifier's train.py divides), so on a loss
#: averaged over images and classes its step is that of lr 5e-3. With every OAA+ loss so averaged
#: (:func:`~wsss_lib.formulas.losses.mce_loss`, :func:`~wsss_lib.formulas.losses.hybrid_loss`,
#: :func:`~wsss_lib.formulas.losses.hybrid_loss_official`), the first step's lr x |grad| of the new
#: layers is within 2x of the official one's and of the classifier's (measured:
#: ``python -m wsss_lib.speed.first_step``, reports/first_step.md; tested in tests/test_recipe.py).
#: The paper's losses summed over the 8 classes at the classifier's lr 0.01 stepped about 17x the
#: official step, and most head units died within the first steps.
OAA_PLUS_LR = 5e-3

#: the values a preset sets (explicit parameters win)
PRESETS: dict[str, dict] = {
    "paper": {},
    # OAA-PyTorch scripts/train_iam.py + train_iam.sh: its ExLoss (here per image, as the Caffe layer at
    # batch 1), SGD with Nesterov momentum 0.9, weight decay 5e-4, new layers drawn from N(0, 0.01)
    "official": {"loss": "hl_official", "nesterov": True, "weight_decay": 5e-4, "head_init": "normal"},
}


@dataclass
class OAAPlusConfig(AttentionTrainConfig):
    """OAA+ hyper-parameters. ``epochs``: 15, the paper's and the official code's (the classifier's).
    ``lr``: see :data:`OAA_PLUS_LR`."""

    PRESETS = PRESETS

    preset: str = "paper"  # "paper" | "official" (PRESETS)
    epochs: int = 15
    lr: float = OAA_PLUS_LR
    loss: str = "hl"  # "mce" (eq. 6) | "hl" (eqs. 7-9) | "hl_official"
    source: str = "oaa_max"  # which accumulated maps are the soft labels
    empty_target: str = "cam"  # EMPTY_TARGETS

    def validate(self) -> "OAAPlusConfig":
        super().validate()
        self.check("loss", self.loss in OAA_PLUS_LOSSES, f"one of {', '.join(OAA_PLUS_LOSSES)}")
        self.check("source", self.source in SOURCES, f"one of {', '.join(SOURCES)}")
        self.check("empty_target", self.empty_target in EMPTY_TARGETS, f"one of {', '.join(EMPTY_TARGETS)}")
        return self


def fill_empty_targets(source: dict, fallback: dict) -> tuple[dict, int]:
    """``source`` with each all-zero map (a present class never accumulated, or empty whenever it
    was) replaced by ``fallback``'s map of the same (image, class) (the classifier's final CAM: the
    official code's last-epoch map). Returns the new source and how many maps were replaced."""
    if source["image_ids"] != fallback["image_ids"] or not (
            torch.equal(source["slot_image"], fallback["slot_image"])
            and torch.equal(source["slot_class"], fallback["slot_class"])):
        raise ValueError("fill_empty_targets: the fallback maps are not of the same (image, class) pairs")
    maps = source["maps"].float()
    empty = maps.flatten(1).amax(1) <= 0
    fb = fallback["maps"].float()
    if fb.shape[1:] != maps.shape[1:]:
        fb = torch.nn.functional.interpolate(fb[:, None], size=maps.shape[1:], mode="bilinear", align_corners=False)[:, 0]
    return {**source, "maps": torch.where(empty[:, None, None], fb, maps)}, int(empty.sum())


class SoftLabels:
    """Dense soft labels per image, built from an attention source's slots, max-normalized to [0, 1]."""

    def __init__(self, source: dict, num_images: int, num_classes: int, device: torch.device) -> None:
        maps = source["maps"].float()
        mx = maps.amax(dim=(1, 2), keepdim=True)
        norm = torch.where(mx > 0, maps / mx.clamp_min(1e-12), torch.zeros_like(maps))
        # one zero row past the slots: absent classes read it (a fixed-size gather, no host sync)
        self.maps = torch.cat([norm, torch.zeros((1, *norm.shape[1:]))]).to(device)
        self.slot_of = torch.full((num_images, num_classes), maps.shape[0], dtype=torch.long)
        self.slot_of[source["slot_image"], source["slot_class"]] = torch.arange(maps.shape[0])
        self.slot_of = self.slot_of.to(device)

    def batch(self, indices: torch.Tensor) -> torch.Tensor:
        """``B x K x H x W`` soft labels in the image frame (zeros for absent classes)."""
        return self.maps[self.slot_of[indices]]


class OAAPlusStage(TrainingStage):
    name = "oaa_plus"
    prefix = "oaaplus"
    Config = OAAPlusConfig
    upstream = {"oaa_run": "classifier"}
    #: the classifier made for OAA+ starts from the same weights
    inherits = ("backbone", "pretrained", "output_stride", "width")
    sources = ("oaa_plus",)
    source_names = {"oaa_plus": "OAA+"}
    main_metrics = ("oaa_plus_miou",)
    quick_note = "2 epochs on a tiny classifier's soft labels: OAA+ maps may be empty"
    notebook = "03_train_oaa_plus.ipynb"

    def run_name(self, cfg: OAAPlusConfig) -> str:
        return f"oaaplus-{cfg.loss}"

    def progress_label(self, cfg: OAAPlusConfig) -> str:
        return f"OAA+ ({cfg.loss})"

    def build_model(self, ctx: RunContext):
        return build_attention_net(ctx.cfg, ctx.ts.num_classes, ctx.weights)

    def training_step(self, ctx: RunContext, model):
        upstream = ctx.upstream["oaa_run"]
        src = load_attention(upstream / "attention" / f"{ctx.cfg.source}.pt")
        if src["image_ids"] != ctx.layout.ids:
            raise ValueError(f"oaa_run={str(upstream)!r}: its attention maps were made for other images than "
                             f"{ctx.root} train")
        if ctx.cfg.empty_target == "cam" and ctx.cfg.source != "cam":
            src, n = fill_empty_targets(src, load_attention(upstream / "attention" / "cam.pt"))
            ctx.state["empty_targets_filled"] = n / max(1, src["maps"].shape[0])
        labels = SoftLabels(src, len(ctx.layout), ctx.ts.num_classes, ctx.device)
        loss_fn = OAA_PLUS_LOSSES[ctx.cfg.loss]

        def step(b: Batch) -> torch.Tensor:
            F = b.model(b.views).float()
            p = image_frame_to_views(labels.batch(b.indices), b.geo, tuple(F.shape[-2:])).clamp_(0, 1)
            return loss_fn(F, p)

        return step, {}

    def attention(self, ctx: RunContext, model) -> dict[str, dict]:
        maps, _ = infer_attention(model, ctx.ts.dataset, ctx.ts.size, ctx.ts.crop, ctx.device, progress=ctx.progress)
        return {"oaa_plus": dense_source(maps, ctx.layout)}

    def extra_metrics(self, ctx: RunContext, model, evals: dict) -> dict:
        return {"empty_targets_filled": ctx.state.get("empty_targets_filled", 0.0)}


STAGE = OAAPlusStage()
run_oaa_plus_stage = STAGE

__all__ = ["EMPTY_TARGETS", "OAA_PLUS_LR", "OAAPlusConfig", "OAAPlusStage", "PRESETS", "SoftLabels", "SOURCES", "STAGE",
           "fill_empty_targets", "run_oaa_plus_stage"]
