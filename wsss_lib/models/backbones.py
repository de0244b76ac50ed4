"""Backbones: torchvision VGG16 (the OAA paper's), ResNet-50/101 (output stride 8 or 16), and a
small CPU network for the embedded benchmark.

Each builder returns a :class:`Backbone`: an ``nn.Sequential`` of *stages* (the AMR compensation
branch inserts its modulation module after each stage) with ``out_channels``, ``output_stride``
and ``weight_keys`` (where each tensor of the torchvision network it was cut from went). Builders
only build, with random initialization; :func:`wsss_lib.models.weights.pretrained_backbone` is the
one function that loads pretrained weights into a backbone (and freezes its BatchNorm,
:func:`freeze_batchnorm`), and every model factory calls it.
"""

from __future__ import annotations

import torch.nn.functional as Fn
import torchvision.models as tvm
from torch import nn

BACKBONES = ("tiny", "vgg16", "resnet50", "resnet101", "mobilenet_v2")


class Backbone(nn.Sequential):
    def __init__(self, stages: list[nn.Module], out_channels: int, output_stride: int,
                 stage_channels: list[int], source: nn.Module | None = None) -> None:
        super().__init__(*stages)
        self.out_channels = out_channels
        self.output_stride = output_stride
        self.stage_channels = stage_channels
        #: state-dict key of the network the stages were cut from -> this backbone's key (identity
        #: for a backbone that is its own source, as ``tiny``): how pretrained weights are loaded
        self.weight_keys = _weight_keys(source, self) if source is not None else {k: k for k in self.state_dict()}


def _weight_keys(source: nn.Module, backbone: nn.Module) -> dict[str, str]:
    """Map the keys of ``source``'s state dict to ``backbone``'s by tensor identity (the backbone
    reuses the source's modules); tensors the backbone dropped (a classifier) are left out."""
    where = {id(t): k for k, t in backbone.state_dict(keep_vars=True).items()}
    return {k: where[id(t)] for k, t in source.state_dict(keep_vars=True).items() if id(t) in where}


class FrozenBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose statistics never change and are always used (the official AMR / IRN
    ``FixedBatchNorm``): the network computes the same function in training and in evaluation mode.
    The affine weight and bias stay trainable, as in the official code."""

    #: read by the data-parallel wrapper, which leaves these out of synchronized batch norm
    frozen_statistics = True

    def forward(self, x):
        return Fn.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, training=False,
                             eps=self.eps)


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm2d`` of ``module`` by a :class:`FrozenBatchNorm2d` holding the same
    statistics and affine parameters (in place; returns ``module``). A pretrained backbone is
    fine-tuned so, as the official AMR and IRN code: one network mode for the OAA store, the drift
    record and the CAM (:func:`wsss_lib.models.weights.pretrained_backbone`)."""
    for parent in list(module.modules()):
        for name, child in parent.named_children():
            if type(child) is nn.BatchNorm2d:
                frozen = FrozenBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                           child.track_running_stats)
                frozen.load_state_dict(child.state_dict())
                if child.affine:
                    frozen.weight.requires_grad_(child.weight.requires_grad)
                    frozen.bias.requires_grad_(child.bias.requires_grad)
                setattr(parent, name, frozen)
    return module


def has_training_batchnorm(module: nn.Module) -> bool:
    """Whether ``module`` holds BatchNorm that normalizes with batch statistics in training mode
    (then its training forward and its evaluation forward differ)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and not getattr(m, "frozen_statistics", False)
               for m in module.modules())


def _cbr(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def tiny_backbone(width: int = 32, output_stride: int = 8) -> Backbone:
    """Four stages, output stride 8: (2w, s2) (4w, s2) (8w, s2) (8w, dilation 2).

    ``output_stride=4`` keeps the third stage at its input's resolution and dilates instead (stage 3
    dilation 2, stage 4 dilation 4), as DeepLab does for ResNet: the same parameters (so the same
    pretrained weights load), twice the cells per side. About 0.3 M parameters at ``width=32``.
    Its pretrained weights are those learnt on the embedded pretraining task
    (:mod:`wsss_lib.models.pretrain`).
    """
    if output_stride not in (4, 8):
        raise ValueError(f"output_stride must be 4 or 8 for the tiny backbone, got {output_stride}")
    w = width
    s3, d3, d4 = (2, 1, 2) if output_stride == 8 else (1, 2, 4)
    stages = [nn.Sequential(*_cbr(3, w, 2), *_cbr(w, w)),
              nn.Sequential(*_cbr(w, 2 * w, 2), *_cbr(2 * w, 2 * w)),
              nn.Sequential(*_cbr(2 * w, 4 * w, s3, dilation=d3), *_cbr(4 * w, 4 * w, dilation=d3)),
              nn.Sequential(*_cbr(4 * w, 4 * w, dilation=d4), *_cbr(4 * w, 4 * w, dilation=d4))]
    return Backbone(stages, 4 * w, output_stride, [w, 2 * w, 4 * w, 4 * w])


def vgg16_backbone() -> Backbone:
    """VGG16 conv layers at output stride 8: pool4 keeps resolution, pool5 is dropped and conv5 is
    dilated by 2 (as DeepLab-LargeFOV and the OAA code)."""
    net = tvm.vgg16(weights=None)
    feats = list(net.features.children())
    pools = [i for i, m in enumerate(feats) if isinstance(m, nn.MaxPool2d)]  # 5 pools
    feats[pools[3]] = nn.MaxPool2d(3, stride=1, padding=1)
    for m in feats[pools[3] + 1:pools[4]]:
        if isinstance(m, nn.Conv2d):
            m.dilation, m.padding = (2, 2), (2, 2)
    cuts = [0, pools[1] + 1, pools[2] + 1, pools[3] + 1, pools[4]]
    stages = [nn.Sequential(*feats[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]
    return Backbone(stages, 512, 8, [128, 256, 512, 512], source=net)


def resnet_backbone(depth: int = 50, output_stride: int = 16, dilate: bool = True) -> Backbone:
    """ResNet-50/101 with dilation instead of stride in the last stage(s).

    ``dilate=False`` (output stride 16 only) just drops the last stage's stride and keeps dilation 1,
    as the official AMR/IRN ``resnet50(strides=(2, 2, 2, 1))``."""
    if output_stride not in (8, 16):
        raise ValueError(f"output_stride must be 8 or 16 for ResNet, got {output_stride}")
    if depth not in (50, 101):
        raise ValueError(f"ResNet depth must be 50 or 101, got {depth}")
    if not dilate and output_stride != 16:
        raise ValueError("dilate=False keeps dilation 1 and needs output_stride=16")
    dil = [False, output_stride == 8, True] if dilate else [False, False, False]
    net = getattr(tvm, f"resnet{depth}")(weights=None, replace_stride_with_dilation=dil)
    if not dilate:  # strides (2, 2, 2, 1): the first block of layer4 keeps resolution
        net.layer4[0].conv2.stride = (1, 1)
        net.layer4[0].downsample[0].stride = (1, 1)
    stages = [nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1),
              net.layer2, net.layer3, net.layer4]
    return Backbone(stages, 2048, output_stride, [256, 512, 1024, 2048], source=net)


#: MobileNetV2's blocks that halve the resolution (``features`` indices) and the stride they bring it to
MOBILENET_DOWNSAMPLING = {7: 16, 14: 32}


def mobilenet_v2_backbone(output_stride: int = 8) -> Backbone:
    """torchvision's MobileNetV2 features (ImageNet weights: :mod:`wsss_lib.models.weights`) at output
    stride 8 or 16, as DeepLabv3's MobileNetV2: the blocks past that stride keep their resolution and
    dilate their depthwise 3x3 convs instead (the block that had the stride included), 2 then 4 at
    output stride 8. Stages (where AMR inserts its AMM): stride 4 (24 channels), 8 (32), 16 (96), and
    the last blocks with the final 1x1 conv (1280 channels, what the ImageNet classifier reads)."""
    if output_stride not in (8, 16):
        raise ValueError(f"output_stride must be 8 or 16 for MobileNetV2, got {output_stride}")
    net = tvm.mobilenet_v2(weights=None)
    feats = list(net.features.children())
    dilation = 1
    for i, block in enumerate(feats):
        if i in MOBILENET_DOWNSAMPLING and MOBILENET_DOWNSAMPLING[i] > output_stride:
            dilation *= 2
        if dilation > 1:
            for m in block.modules():
                if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3):
                    m.stride, m.dilation, m.padding = (1, 1), (dilation, dilation), (dilation, dilation)
    stages = [nn.Sequential(*feats[0:4]), nn.Sequential(*feats[4:7]), nn.Sequential(*feats[7:14]),
              nn.Sequential(*feats[14:19])]
    return Backbone(stages, 1280, output_stride, [24, 32, 96, 1280], source=net)


def build_backbone(name: str, *, output_stride: int = 8, width: int = 32) -> Backbone:
    """Build a backbone by name (one of :data:`BACKBONES`), randomly initialized (pretrained weights:
    :func:`wsss_lib.models.weights.pretrained_backbone`)."""
    if name == "tiny":
        return tiny_backbone(width, output_stride)
    if name == "vgg16":
        return vgg16_backbone()
    if name in ("resnet50", "resnet101"):
        return resnet_backbone(int(name[6:]), output_stride)
    if name == "mobilenet_v2":
        return mobilenet_v2_backbone(output_stride)
    raise ValueError(f"unknown backbone {name!r}; expected one of {', '.join(BACKBONES)}")


def receptive_field(net: nn.Module) -> int:
    """The theoretical receptive field (pixels per side) of one output cell of a chain of
    convolutions and poolings, in the order ``net.modules()`` lists them: each layer of kernel
    ``k``, dilation ``d`` and stride ``s`` adds ``(k - 1) * d * jump`` and multiplies ``jump`` (the
    input pixels between neighbouring cells) by ``s``. Only for networks that are a chain (the tiny
    backbone, VGG-16); a ResNet's shortcut branches would be counted as if chained, so refused."""
    rf, jump = 1, 1
    for m in net.modules():
        if type(m).__name__ == "Bottleneck" or type(m).__name__ == "BasicBlock":
            raise ValueError(f"receptive_field: {type(net).__name__} has residual blocks; only chains are supported")
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            pair = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
            k, s = pair(m.kernel_size)[0], pair(m.stride)[0]
            d = pair(getattr(m, "dilation", 1))[0]
            rf += (k - 1) * d * jump
            jump *= s
    return rf


def count_parameters(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


__all__ = ["BACKBONES", "Backbone", "FrozenBatchNorm2d", "build_backbone", "count_parameters", "freeze_batchnorm",
           "has_training_batchnorm", "mobilenet_v2_backbone", "receptive_field"]
