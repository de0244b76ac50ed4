"""Stage 3: OAA+, the integral attention model (OAA section 3.3).

The classifier network without GAP and classification loss is trained on the accumulated maps
of a classifier + OAA run (normalized to ``[0, 1]``) as pixel-wise soft labels, with MCE (eq. 6),
the hybrid loss (eqs. 7-9, per class) or the official code's batch-global hybrid loss. Its
attention at inference comes straight from the class-aware conv (eq. 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from wsss_lib.formulas.accumulation import FUSION_SOURCES
from wsss_lib.runs.attention_io import load_attention
from wsss_lib.data.transforms import image_frame_to_views
from wsss_lib.formulas.losses import OAA_PLUS_LOSSES
from wsss_lib.models.cam import build_cam_net
from wsss_lib.engine.common import dense_source, infer_attention
from wsss_lib.engine.config import AttentionTrainConfig
from wsss_lib.engine.loop import Batch
from wsss_lib.stages.base import RunContext, TrainingStage

#: the upstream classifier's attention sources that can serve as soft labels
SOURCES = (*FUSION_SOURCES, "cam")


@dataclass
class OAAPlusConfig(AttentionTrainConfig):
    loss: str = "hl"  # "mce" (eq. 6) | "hl" (eqs. 7-9) | "hl_official"
    source: str = "oaa_max"  # which accumulated maps are the soft labels

    def validate(self) -> "OAAPlusConfig":
        super().validate()
        self.check("loss", self.loss in OAA_PLUS_LOSSES, f"one of {', '.join(OAA_PLUS_LOSSES)}")
        self.check("source", self.source in SOURCES, f"one of {', '.join(SOURCES)}")
        return self


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
    main_metrics = ("oaa_plus_miou",)
    quick_note = "2 epochs on near-empty soft labels: OAA+ maps may be empty"
    notebook = "03_train_oaa_plus.ipynb"

    def run_name(self, cfg: OAAPlusConfig) -> str:
        return f"oaaplus-{cfg.loss}"

    def progress_label(self, cfg: OAAPlusConfig) -> str:
        return f"OAA+ ({cfg.loss})"

    def build_model(self, ctx: RunContext):
        cfg = ctx.cfg
        return build_cam_net(cfg.backbone, ctx.ts.num_classes, ctx.weights.get(cfg.backbone),
                             output_stride=cfg.output_stride, width=cfg.width)

    def training_step(self, ctx: RunContext, model):
        upstream = ctx.upstream["oaa_run"]
        src = load_attention(upstream / "attention" / f"{ctx.cfg.source}.pt")
        if src["image_ids"] != ctx.layout.ids:
            raise ValueError(f"oaa_run={str(upstream)!r}: its attention maps were made for other images than "
                             f"{ctx.root} train")
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


STAGE = OAAPlusStage()
run_oaa_plus_stage = STAGE

__all__ = ["OAAPlusConfig", "OAAPlusStage", "SoftLabels", "SOURCES", "STAGE", "run_oaa_plus_stage"]
