"""The OAA classifier (OAA section 3.1): backbone + three 3x3 conv layers with ReLU + a 1x1
class-aware conv with C output channels. Its output ``F`` gives both the class scores
(:func:`wsss_lib.formulas.attention.class_scores`, eq. 1) and the attention maps
(:func:`wsss_lib.formulas.attention.attention_maps`, eq. 2).

The same network without GAP and classification loss is OAA+'s integral attention model, and
(with AMM inserted in the backbone) AMR's compensation branch.
"""

from __future__ import annotations

from torch import nn

from wsss_lib.models.backbones import Backbone
from wsss_lib.models.weights import Weights, pretrained_backbone

#: how the new layers (head convs and the class-aware conv) start: ``kaiming`` (He-normal head, the
#: class conv N(0, 0.01)) or ``normal`` (every new conv N(0, 0.01), biases 0: the official OAA and
#: OAA+ ``vgg1.py`` / Caffe ``gaussian std 0.01`` fillers)
HEAD_INITS = ("kaiming", "normal")


class CAMNet(nn.Module):
    """``forward(x) -> F`` of shape ``B x C x h x w`` (class-aware maps, before any ReLU)."""

    def __init__(self, backbone: Backbone, num_classes: int, head_channels: int = 512,
                 num_head_convs: int = 3, classifier_bias: bool = True, head_init: str = "kaiming") -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.backbone = backbone
        layers: list[nn.Module] = []
        cin = backbone.out_channels
        for _ in range(num_head_convs):
            layers += [nn.Conv2d(cin, head_channels, 3, padding=1), nn.ReLU(inplace=True)]
            cin = head_channels
        self.head = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(cin, num_classes, 1, bias=classifier_bias)
        self.num_classes = num_classes
        if head_init not in HEAD_INITS:
            raise ValueError(f"head_init={head_init!r} is invalid: expected one of {', '.join(HEAD_INITS)}")
        for m in self.head.modules():
            if isinstance(m, nn.Conv2d):
                if head_init == "kaiming":
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                else:
                    nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.classifier.weight, std=0.01)
        if classifier_bias:
            nn.init.zeros_(self.classifier.bias)

    @property
    def output_stride(self) -> int:
        return self.backbone.output_stride

    def forward(self, x):
        return self.classifier(self.head(self.backbone(x)))

    def param_groups(self, lr: float, weight_decay: float, head_lr_mult: float = 10.0,
                     freeze_backbone: bool = False) -> list[dict]:
        """Backbone at ``lr``; new layers' weights at ``10 lr`` and biases at ``20 lr`` (no decay),
        the usual recipe of the OAA code (and DeepLab) for layers trained from scratch."""
        new_w, new_b = [], []
        for m in list(self.head.modules()) + [self.classifier]:
            if isinstance(m, nn.Conv2d):
                new_w.append(m.weight)
                if m.bias is not None:
                    new_b.append(m.bias)
        groups = [{"params": new_w, "lr": head_lr_mult * lr, "weight_decay": weight_decay, "name": "head_w"},
                  {"params": new_b, "lr": 2 * head_lr_mult * lr, "weight_decay": 0.0, "name": "head_b"}]
        if not freeze_backbone:
            groups.insert(0, {"params": list(self.backbone.parameters()), "lr": lr,
                              "weight_decay": weight_decay, "name": "backbone"})
        return groups


def build_cam_net(backbone: str, num_classes: int, weights: Weights | None = None, output_stride: int = 8,
                  head_channels: int | None = None, width: int = 32, head_convs: int = 3,
                  head_init: str = "kaiming", classifier_bias: bool = True) -> CAMNet:
    """The classifier on ``backbone`` starting from ``weights`` (``None``: random initialization,
    BatchNorm trained; else BatchNorm frozen: :func:`~wsss_lib.models.weights.pretrained_backbone`);
    ``width``: the tiny backbone's (its head has ``4 * width`` channels, 64 at width 16);
    ``head_convs``: the 3x3 convs between the backbone and the class-aware conv (OAA: 3; the
    official AMR network: 0)."""
    bb = pretrained_backbone(backbone, weights, output_stride=output_stride, width=width)
    if head_channels is None:
        head_channels = 512 if backbone != "tiny" else 4 * width
    return CAMNet(bb, num_classes, head_channels, head_convs, classifier_bias, head_init)
