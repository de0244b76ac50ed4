"""Segmentation networks trained on pseudo labels.

- ``small``: the embedded benchmark's network: the ``tiny`` backbone (output stride 8, last stage
  dilated) with a LargeFOV-style head (3x3 conv at dilation 4, then 1x1 to the classes); CPU-sized;
  ``pretrained``: the backbone learnt on the embedded source task (:mod:`wsss_lib.pretrain`).
- ``deeplab_largefov``: DeepLab-LargeFOV on VGG16 (the OAA paper's segmentation network): VGG16 at
  output stride 8, pool5 (3x3, stride 1) and its 3x3 average pool, fc6 as a 3x3 conv at dilation 12
  (1024 channels), fc7 1x1 (1024), dropout 0.5 after both, fc8 1x1 to the classes.
- ``deeplabv3_resnet101``: torchvision's ``deeplabv3_resnet101`` with ``weights=None`` and ImageNet
  ``weights_backbone=`` (torchvision's VOC-trained ``weights=`` were learnt from full masks: not
  allowed in weakly supervised segmentation).

Every network returns class scores (``B x (K+1) x h x w``, any resolution; the trainer upsamples to
the label size) and offers ``param_groups(lr, wd)`` with the new layers at 10x the learning rate.
"""

from __future__ import annotations

from torch import nn

from .backbones import _cbr, build_backbone, load_pretrained

SEG_NETWORKS = ("small", "deeplab_largefov", "deeplabv3_resnet101")


class SegNet(nn.Module):
    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x):
        return self.head(self.backbone(x))

    def param_groups(self, lr: float, weight_decay: float, head_lr_mult: float = 10.0) -> list[dict]:
        """Backbone at ``lr``; the head (new layers) at ``head_lr_mult * lr`` (the usual 10x)."""
        return [{"params": [p for p in self.backbone.parameters() if p.requires_grad], "lr": lr,
                 "weight_decay": weight_decay, "name": "backbone"},
                {"params": list(self.head.parameters()), "lr": head_lr_mult * lr, "weight_decay": weight_decay,
                 "name": "head"}]


def small_segnet(num_classes: int, width: int = 32, pretrained: bool = False, quick: bool = False) -> SegNet:
    bb = build_backbone("tiny", pretrained=pretrained, width=width, quick=quick)
    c = bb.out_channels
    head = nn.Sequential(*_cbr(c, c, dilation=4), nn.Dropout2d(0.1), nn.Conv2d(c, num_classes, 1))
    return SegNet(bb, head)


def deeplab_largefov(num_classes: int, pretrained: bool = True) -> SegNet:
    bb = build_backbone("vgg16", pretrained=pretrained)
    head = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.AvgPool2d(3, 1, 1),
                         nn.Conv2d(512, 1024, 3, padding=12, dilation=12), nn.ReLU(inplace=True), nn.Dropout2d(0.5),
                         nn.Conv2d(1024, 1024, 1), nn.ReLU(inplace=True), nn.Dropout2d(0.5),
                         nn.Conv2d(1024, num_classes, 1))
    nn.init.normal_(head[-1].weight, std=0.01)
    nn.init.zeros_(head[-1].bias)
    return SegNet(bb, head)


class _TorchvisionSeg(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)["out"]

    def param_groups(self, lr: float, weight_decay: float, head_lr_mult: float = 10.0) -> list[dict]:
        return [{"params": list(self.net.backbone.parameters()), "lr": lr, "weight_decay": weight_decay,
                 "name": "backbone"},
                {"params": list(self.net.classifier.parameters()), "lr": head_lr_mult * lr,
                 "weight_decay": weight_decay, "name": "head"}]


def deeplabv3_resnet101(num_classes: int, pretrained: bool = True) -> nn.Module:
    from torchvision.models.segmentation import deeplabv3_resnet101 as tv_deeplab

    wb = load_pretrained("resnet101") if pretrained else None
    return _TorchvisionSeg(tv_deeplab(weights=None, weights_backbone=wb, num_classes=num_classes, aux_loss=False))


def build_segnet(name: str, num_classes: int, pretrained: bool = False, quick: bool = False) -> nn.Module:
    """A segmentation network by name (one of :data:`SEG_NETWORKS`) for ``num_classes`` (background
    included); ``small`` with ``pretrained`` starts from the embedded source task's tiny backbone."""
    if name == "small":
        return small_segnet(num_classes, pretrained=pretrained, quick=quick)
    if name == "deeplab_largefov":
        return deeplab_largefov(num_classes, pretrained)
    if name == "deeplabv3_resnet101":
        return deeplabv3_resnet101(num_classes, pretrained)
    raise ValueError(f"network={name!r} is invalid: expected one of {', '.join(SEG_NETWORKS)}")


__all__ = ["SEG_NETWORKS", "SegNet", "build_segnet"]
