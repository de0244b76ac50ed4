"""Backbones: torchvision VGG16 (the OAA paper's), ResNet-50/101 (output stride 8 or 16), and a
small CPU network for the embedded benchmark.

Each builder returns a :class:`Backbone`: an ``nn.Sequential`` of *stages* (the AMR compensation
branch inserts its modulation module after each stage) with ``out_channels`` and
``output_stride``. Every builder takes ``weights`` (:class:`wsss_lib.models.weights.Weights`, or
``None`` for random initialization): ImageNet weights from the torch hub cache (a missing file
raises, naming it; nothing is downloaded at run time), or, for ``tiny``, the weights learnt on the
embedded source task (:mod:`wsss_lib.models.pretrain`: the cache first, made when missing).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:
    from wsss_lib.models.weights import Weights

BACKBONES = ("tiny", "vgg16", "resnet50", "resnet101")


class Backbone(nn.Sequential):
    def __init__(self, stages: list[nn.Module], out_channels: int, output_stride: int,
                 stage_channels: list[int]) -> None:
        super().__init__(*stages)
        self.out_channels = out_channels
        self.output_stride = output_stride
        self.stage_channels = stage_channels


def _cbr(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def tiny_backbone(width: int = 32, weights: "Weights | None" = None, output_stride: int = 8) -> Backbone:
    """Four stages, output stride 8: (2w, s2) (4w, s2) (8w, s2) (8w, dilation 2).

    ``output_stride=4`` keeps the third stage at its input's resolution and dilates instead (stage 3
    dilation 2, stage 4 dilation 4), as DeepLab does for ResNet: the same parameters (so the same
    pretrained weights load), twice the cells per side. About 0.3 M parameters at ``width=32``.
    ``weights``: ``Weights("source-task", spec)``, the weights learnt on the embedded source task of
    ``spec`` (:func:`wsss_lib.models.pretrain.load_tiny_pretrained`).
    """
    if output_stride not in (4, 8):
        raise ValueError(f"output_stride must be 4 or 8 for the tiny backbone, got {output_stride}")
    w = width
    s3, d3, d4 = (2, 1, 2) if output_stride == 8 else (1, 2, 4)
    stages = [nn.Sequential(*_cbr(3, w, 2), *_cbr(w, w)),
              nn.Sequential(*_cbr(w, 2 * w, 2), *_cbr(2 * w, 2 * w)),
              nn.Sequential(*_cbr(2 * w, 4 * w, s3, dilation=d3), *_cbr(4 * w, 4 * w, dilation=d3)),
              nn.Sequential(*_cbr(4 * w, 4 * w, dilation=d4), *_cbr(4 * w, 4 * w, dilation=d4))]
    bb = Backbone(stages, 4 * w, output_stride, [w, 2 * w, 4 * w, 4 * w])
    if weights is not None:
        if weights.source != "source-task":
            raise ValueError(f"the tiny backbone has no {weights.source!r} weights; expected source-task weights")
        from wsss_lib.models.pretrain import load_tiny_pretrained

        bb.load_state_dict(load_tiny_pretrained(weights.pretrain, width))
    return bb


def _torchvision_net(name: str, weights: "Weights | None", **kwargs):
    """torchvision's ``name`` network, with its ImageNet weights when ``weights`` asks for them
    (from the torch hub cache; a missing file raises, naming it: see :mod:`wsss_lib.models.weights`)."""
    import torchvision.models as tvm

    net = getattr(tvm, name)(weights=None, **kwargs)
    if weights is not None:
        from wsss_lib.models.weights import load_imagenet

        if weights.source != "imagenet":
            raise ValueError(f"{name} starts from ImageNet weights or none, not {weights.source!r}")
        net.load_state_dict(load_imagenet(name))
    return net


def vgg16_backbone(weights: "Weights | None" = None) -> Backbone:
    """VGG16 conv layers at output stride 8: pool4 keeps resolution, pool5 is dropped and conv5 is
    dilated by 2 (as DeepLab-LargeFOV and the OAA code)."""
    feats = list(_torchvision_net("vgg16", weights).features.children())
    pools = [i for i, m in enumerate(feats) if isinstance(m, nn.MaxPool2d)]  # 5 pools
    feats[pools[3]] = nn.MaxPool2d(3, stride=1, padding=1)
    for m in feats[pools[3] + 1:pools[4]]:
        if isinstance(m, nn.Conv2d):
            m.dilation, m.padding = (2, 2), (2, 2)
    cuts = [0, pools[1] + 1, pools[2] + 1, pools[3] + 1, pools[4]]
    stages = [nn.Sequential(*feats[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]
    return Backbone(stages, 512, 8, [128, 256, 512, 512])


def resnet_backbone(depth: int = 50, output_stride: int = 16, weights: "Weights | None" = None,
                    dilate: bool = True) -> Backbone:
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
    net = _torchvision_net(f"resnet{depth}", weights, replace_stride_with_dilation=dil)
    if not dilate:  # strides (2, 2, 2, 1): the first block of layer4 keeps resolution
        net.layer4[0].conv2.stride = (1, 1)
        net.layer4[0].downsample[0].stride = (1, 1)
    stages = [nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1),
              net.layer2, net.layer3, net.layer4]
    return Backbone(stages, 2048, output_stride, [256, 512, 1024, 2048])


def build_backbone(name: str, weights: "Weights | None" = None, output_stride: int = 8, width: int = 32) -> Backbone:
    """Build a backbone by name (one of :data:`BACKBONES`) from ``weights`` (``None``: random
    initialization; see :func:`wsss_lib.models.weights.weights_for`)."""
    if name == "tiny":
        return tiny_backbone(width, weights, output_stride)
    if name == "vgg16":
        return vgg16_backbone(weights)
    if name in ("resnet50", "resnet101"):
        return resnet_backbone(int(name[6:]), output_stride, weights)
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


__all__ = ["BACKBONES", "Backbone", "build_backbone", "count_parameters", "receptive_field"]
