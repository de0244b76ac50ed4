"""Segmentation networks trained on pseudo labels.

- ``small``: the embedded benchmark's network: the ``tiny`` backbone (output stride 8, last stage
  dilated) with a LargeFOV-style head (3x3 conv at dilation 4, then 1x1 to the classes); CPU-sized;
  pretrained: the backbone learnt on the embedded pretraining task (:mod:`wsss_lib.models.pretrain`).
- ``deeplab_largefov``: DeepLab-LargeFOV on VGG16 (the OAA paper's segmentation network), layer for
  layer as the official ``examples/seg/exp1/train.prototxt`` of PengtaoJiang/OAA: pool1-pool3 3x3
  max pools at stride 2 with padding 1 (Caffe rounds output sizes up: 321 px in, 41 x 41 out),
  pool4 and pool5 3x3 at stride 1, conv5 at dilation 2, a 3x3 average pool (pool5a), fc6 a 3x3 conv
  at dilation 12 (1024 channels), fc7 1x1 (1024), element-wise dropout 0.5 after both, fc8 1x1 to the
  classes. Not reproduced: fc6 / fc7 start from DeepLab's subsampled VGG fc weights officially
  (``init.caffemodel``); here from PyTorch's default initialization, at the head's learning rate.
- ``deeplabv3_resnet101``: torchvision's ``deeplabv3_resnet101`` with ``weights=None`` and ImageNet
  ``weights_backbone=`` (torchvision's VOC-trained ``weights=`` were learnt from full masks: not
  allowed in weakly supervised segmentation).

Every network returns class scores (``B x (K+1) x h x w``, any resolution; the trainer upsamples to
the label size) and offers ``param_groups(lr, wd)`` with the new layers at 10x the learning rate.
"""

from __future__ import annotations

from torch import nn

from wsss_lib.models.backbones import _cbr, freeze_batchnorm
from wsss_lib.models.weights import load_imagenet, pretrained_backbone

SEG_NETWORKS = ("small", "deeplab_largefov", "deeplabv3_resnet101", "mobilenet_v2_largefov")


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


def small_segnet(num_classes: int, width: int = 32, weights=None) -> SegNet:
    bb = pretrained_backbone("tiny", weights, width=width)
    c = bb.out_channels
    head = nn.Sequential(*_cbr(c, c, dilation=4), nn.Dropout2d(0.1), nn.Conv2d(c, num_classes, 1))
    return SegNet(bb, head)


def _largefov_pools(module: nn.Module) -> None:
    """The VGG16 backbone's 2x2 stride-2 pools (torchvision's, and the OAA classifier's) become
    DeepLab-LargeFOV's 3x3 stride-2 pools with padding 1, sized as Caffe sizes them (rounding up)."""
    for parent in list(module.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.MaxPool2d) and child.stride in (2, (2, 2)):
                setattr(parent, name, nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True))


def deeplab_largefov(num_classes: int, weights=None) -> SegNet:
    bb = pretrained_backbone("vgg16", weights)
    _largefov_pools(bb)
    head = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.AvgPool2d(3, 1, 1),
                         nn.Conv2d(512, 1024, 3, padding=12, dilation=12), nn.ReLU(inplace=True), nn.Dropout(0.5),
                         nn.Conv2d(1024, 1024, 1), nn.ReLU(inplace=True), nn.Dropout(0.5),
                         nn.Conv2d(1024, num_classes, 1))
    nn.init.normal_(head[-1].weight, std=0.01)
    nn.init.zeros_(head[-1].bias)
    return SegNet(bb, head)


def mobilenet_v2_largefov(num_classes: int, weights=None) -> SegNet:
    """MobileNetV2 (ImageNet weights, output stride 8: :func:`~wsss_lib.models.backbones.mobilenet_v2_backbone`)
    with a LargeFOV-style head (3x3 conv at dilation 12 to 256 channels, dropout, 1x1 to the classes):
    the cheap real network for a first VOC run on a small GPU."""
    bb = pretrained_backbone("mobilenet_v2", weights, output_stride=8)
    head = nn.Sequential(nn.Conv2d(bb.out_channels, 256, 3, padding=12, dilation=12), nn.ReLU(inplace=True),
                         nn.Dropout(0.5), nn.Conv2d(256, num_classes, 1))
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


def deeplabv3_resnet101(num_classes: int, weights=None) -> nn.Module:
    from torchvision.models.segmentation import \
        deeplabv3_resnet101 as tv_deeplab  # lazy: heavy: this module stays importable without torchvision

    net = tv_deeplab(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False)
    if weights is not None:  # ImageNet weights of the backbone (torchvision's ``weights_backbone``)
        missing, _ = net.backbone.load_state_dict(load_imagenet("resnet101"), strict=False)
        if missing:
            raise RuntimeError(f"ImageNet ResNet-101 weights do not fit the DeepLabv3 backbone: missing {missing[:5]}")
        freeze_batchnorm(net.backbone)
    return _TorchvisionSeg(net)


#: the backbone each segmentation network starts from (its ``weights``)
SEG_BACKBONES = {"small": "tiny", "deeplab_largefov": "vgg16", "deeplabv3_resnet101": "resnet101",
                 "mobilenet_v2_largefov": "mobilenet_v2"}


def build_segnet(name: str, num_classes: int, weights=None) -> nn.Module:
    """A segmentation network by name (one of :data:`SEG_NETWORKS`) for ``num_classes`` (background
    included), its backbone (:data:`SEG_BACKBONES`) from ``weights`` (``None``: random initialization)."""
    if name == "small":  # as wide as the pretrained tiny backbone it starts from (32 from scratch)
        width = weights.pretrain.width if weights is not None and weights.pretrain is not None else 32
        return small_segnet(num_classes, width=width, weights=weights)
    if name == "deeplab_largefov":
        return deeplab_largefov(num_classes, weights)
    if name == "deeplabv3_resnet101":
        return deeplabv3_resnet101(num_classes, weights)
    if name == "mobilenet_v2_largefov":
        return mobilenet_v2_largefov(num_classes, weights)
    raise ValueError(f"network={name!r} is invalid: expected one of {', '.join(SEG_NETWORKS)}")


__all__ = ["SEG_BACKBONES", "SEG_NETWORKS", "SegNet", "build_segnet"]
