"""AMR (Qin et al., AAAI 2022): a spotlight branch (a plain CAM classifier) and a compensation branch
(the same architecture with AMM inserted), trained together; at inference the two CAMs are mixed
(:func:`weighted_cam`, report eq. 8).

AMM placement (:data:`PLACEMENTS`):

- ``"residual"`` (the default): one AMM after each backbone stage, as the report says, added to what
  it modulates: the stage passes on ``f + AMM(f)``. Every AMM of the official code sits on a
  bottleneck's residual branch, beside an identity path that carries the unmodulated features
  (JayQine/AMR ``net/resnet50.py``), and the official network fine-tunes with frozen BatchNorm; this
  placement keeps that identity path on a backbone of any kind.
- ``"stage"``: the report's literal reading, ``f -> AMM(f)``: nothing unmodulated passes a stage. With
  a pretrained backbone's frozen BatchNorm (the official recipe), the next stage normalizes the
  attenuated features (each AMM scales ``|f|`` by about 0.45) with statistics made for unmodulated
  ones, and on the default benchmark the compensation branch collapses (every map empty).
- ``"bottleneck"``: one inside every ResNet bottleneck, after its last BN and before the residual
  addition (as the official code).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck

from wsss_lib.models.amm import AMM
from wsss_lib.models.cam import CAMNet, build_cam_net

PLACEMENTS = ("residual", "stage", "bottleneck")
#: how AMR's parameters are grouped for the optimizer (:meth:`AMRNet.param_groups`)
LR_GROUPS = ("cam", "official")


def weighted_cam(M_s: torch.Tensor, M_c: torch.Tensor, xi: float) -> torch.Tensor:
    """Report eq. 8: ``M = xi * M_s + (1 - xi) * M_c`` on max-normalized maps (applied at inference,
    so a sweep over xi reuses the two branches' maps)."""
    if not 0.0 <= xi <= 1.0:
        raise ValueError(f"xi must lie in [0, 1], got {xi}")
    return xi * M_s + (1.0 - xi) * M_c


class ResidualAMM(nn.Module):
    """``f + AMM(f)``: the modulation added to the features it modulates (the ``"residual"`` placement)."""

    def __init__(self, amm: AMM) -> None:
        super().__init__()
        self.amm = amm

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return f + self.amm(f)


def insert_amm(net: CAMNet, placement: str = "residual", **amm_kwargs) -> CAMNet:
    """Insert AMM modules into ``net``'s backbone in place (see :data:`PLACEMENTS`); returns ``net``."""
    bb = net.backbone
    if placement in ("residual", "stage"):
        for i, ch in enumerate(bb.stage_channels):
            amm = AMM(ch, **amm_kwargs)
            bb[i] = nn.Sequential(bb[i], ResidualAMM(amm) if placement == "residual" else amm)
        return net
    if placement == "bottleneck":
        blocks = [m for m in bb.modules() if isinstance(m, Bottleneck)]
        if not blocks:
            raise ValueError("placement='bottleneck' needs a ResNet backbone (resnet50/resnet101); "
                             "use placement='residual' (or 'stage') for the others")
        for b in blocks:
            b.bn3 = nn.Sequential(b.bn3, AMM(b.bn3.num_features, **amm_kwargs))
        return net
    raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")


class AMRNet(nn.Module):
    """``forward(x) -> (F_s, F_c)``, the class-aware maps of the spotlight and compensation branches."""

    def __init__(self, spotlight: CAMNet, compensation: CAMNet, freeze_spotlight: bool = False,
                 detach_stem: bool = False) -> None:
        super().__init__()
        self.spotlight = spotlight
        self.compensation = compensation
        self.freeze_spotlight = freeze_spotlight
        # official code: the compensation branch's first stage (stem + layer1) output is detached
        self.detach_stem = detach_stem
        if freeze_spotlight:
            for p in self.spotlight.parameters():
                p.requires_grad_(False)

    @property
    def num_classes(self) -> int:
        return self.spotlight.num_classes

    def train(self, mode: bool = True) -> "AMRNet":
        super().train(mode)
        if self.freeze_spotlight:
            self.spotlight.eval()  # frozen BN statistics too
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.freeze_spotlight:
            with torch.no_grad():
                F_s = self.spotlight(x)
        else:
            F_s = self.spotlight(x)
        if not self.detach_stem:
            return F_s, self.compensation(x)
        comp = self.compensation
        f = comp.backbone[0](x).detach()
        for stage in list(comp.backbone)[1:]:
            f = stage(f)
        return F_s, comp.classifier(comp.head(f))

    def param_groups(self, lr: float, weight_decay: float, lr_groups: str = "cam") -> list[dict]:
        """The optimizer's parameter groups (see :data:`LR_GROUPS`): ``"cam"``, each branch as the CAM
        classifier (:meth:`~wsss_lib.models.cam.CAMNet.param_groups`: backbone 1x, new layers 10x / 20x);
        ``"official"``, the official ``step/train_amr.py``: the spotlight backbone 1x, the compensation
        branch's feature extractor (backbone with its AMMs, and our head convs where there are any)
        10x, the class-aware convs 0.1x, all with weight decay. Parameters no gradient reaches (a
        frozen spotlight, a detached stem) are left out."""
        if lr_groups not in LR_GROUPS:
            raise ValueError(f"lr_groups={lr_groups!r} is invalid: expected one of {', '.join(LR_GROUPS)}")
        if lr_groups == "cam":
            groups = self.compensation.param_groups(lr, weight_decay)
            if not self.freeze_spotlight:
                groups += self.spotlight.param_groups(lr, weight_decay)
        else:
            comp = self.compensation
            groups = [{"params": [*comp.backbone.parameters(), *comp.head.parameters()], "lr": 10 * lr,
                       "weight_decay": weight_decay, "name": "compensation_features"},
                      {"params": list(comp.classifier.parameters()), "lr": 0.1 * lr, "weight_decay": weight_decay,
                       "name": "classifiers"}]
            if not self.freeze_spotlight:
                spot = self.spotlight
                groups.insert(0, {"params": [*spot.backbone.parameters(), *spot.head.parameters()], "lr": lr,
                                  "weight_decay": weight_decay, "name": "spotlight_features"})
                groups[-1]["params"] += list(spot.classifier.parameters())
        if self.detach_stem:  # no gradient reaches the first stage: leave it out of the optimizer
            stem = {id(p) for p in self.compensation.backbone[0].parameters()}
            for g in groups:
                g["params"] = [p for p in g["params"] if id(p) not in stem]
        for g in groups:  # parameters frozen elsewhere (requires_grad False) are no one's
            g["params"] = [p for p in g["params"] if p.requires_grad]
        return [g for g in groups if g["params"]]


def build_amr(backbone: str, num_classes: int, weights=None, output_stride: int = 8,
              placement: str = "residual", freeze_spotlight: bool = False, detach_stem: bool = False,
              width: int = 32, head_convs: int = 3, head_init: str = "kaiming", **amm_kwargs) -> AMRNet:
    """Both branches on ``backbone`` from ``weights`` (:class:`wsss_lib.models.weights.Weights` or
    ``None``), each as the CAM classifier (``head_convs``, ``head_init``); the compensation branch
    gets the AMM at ``placement``."""
    net = dict(output_stride=output_stride, width=width, head_convs=head_convs, head_init=head_init)
    spot = build_cam_net(backbone, num_classes, weights, **net)
    comp = insert_amm(build_cam_net(backbone, num_classes, weights, **net), placement, **amm_kwargs)
    return AMRNet(spot, comp, freeze_spotlight, detach_stem)
