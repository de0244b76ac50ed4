"""Backbones: torchvision VGG16 (the OAA paper's), ResNet-50/101 (output stride 8 or 16), and a
small CPU network for the embedded benchmark.

Each builder returns a :class:`Backbone`: an ``nn.Sequential`` of *stages* (the AMR compensation
branch inserts its modulation module after each stage) with ``out_channels`` and
``output_stride``. Pretrained ImageNet weights go through torchvision's ``weights=`` mechanism:
they are used when the machine has them (in the torch hub cache, or downloadable); otherwise a
clear warning says so and the network starts from random initialization. The ``tiny`` backbone's
pretrained weights come from the embedded source task (:mod:`wsss_lib.pretrain`): the cache first,
made here when missing, never downloaded.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from torch import nn

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


def tiny_backbone(width: int = 32, pretrained: bool = False, quick: bool = False) -> Backbone:
    """Four stages, output stride 8: (2w, s2) (4w, s2) (8w, s2) (8w, dilation 2).

    About 0.3 M parameters at ``width=32``. ``pretrained``: the weights learnt on the embedded
    source task (:func:`wsss_lib.pretrain.load_tiny_pretrained`; its quick spec when ``quick``).
    """
    w = width
    stages = [nn.Sequential(*_cbr(3, w, 2), *_cbr(w, w)),
              nn.Sequential(*_cbr(w, 2 * w, 2), *_cbr(2 * w, 2 * w)),
              nn.Sequential(*_cbr(2 * w, 4 * w, 2), *_cbr(4 * w, 4 * w)),
              nn.Sequential(*_cbr(4 * w, 4 * w, dilation=2), *_cbr(4 * w, 4 * w, dilation=2))]
    bb = Backbone(stages, 4 * w, 8, [w, 2 * w, 4 * w, 4 * w])
    if pretrained:
        from ..pretrain import load_tiny_pretrained, pretrain_spec

        bb.load_state_dict(load_tiny_pretrained(pretrain_spec(quick), width))
    return bb


def _weights_cached(weights) -> bool:
    from torch.hub import get_dir

    return (Path(get_dir()) / "checkpoints" / Path(weights.url).name).exists()


def load_pretrained(name: str, allow_download: bool = True):
    """The torchvision weights enum value for ``name`` if usable here, else ``None`` (with a warning)."""
    from torchvision.models import get_model_weights

    weights = get_model_weights(name).DEFAULT
    if _weights_cached(weights):
        return weights
    if not allow_download:
        warnings.warn(f"pretrained ImageNet weights for {name} are not in the torch hub cache and "
                      f"downloads are off; starting from random initialization. Put "
                      f"{Path(weights.url).name} into $TORCH_HOME/hub/checkpoints to use them.", stacklevel=3)
        return None
    try:
        weights.get_state_dict(progress=False)  # downloads into the cache
        return weights
    except Exception as e:  # no network, proxy, disk...
        warnings.warn(f"could not get pretrained ImageNet weights for {name} ({type(e).__name__}: "
                      f"{e}); starting from random initialization. Download {weights.url} into "
                      "$TORCH_HOME/hub/checkpoints to use them.", stacklevel=3)
        return None


def vgg16_backbone(pretrained: bool = True, allow_download: bool = True) -> Backbone:
    """VGG16 conv layers at output stride 8: pool4 keeps resolution, pool5 is dropped and conv5 is
    dilated by 2 (as DeepLab-LargeFOV and the OAA code)."""
    from torchvision.models import vgg16

    weights = load_pretrained("vgg16", allow_download) if pretrained else None
    feats = list(vgg16(weights=weights).features.children())
    pools = [i for i, m in enumerate(feats) if isinstance(m, nn.MaxPool2d)]  # 5 pools
    feats[pools[3]] = nn.MaxPool2d(3, stride=1, padding=1)
    for m in feats[pools[3] + 1:pools[4]]:
        if isinstance(m, nn.Conv2d):
            m.dilation, m.padding = (2, 2), (2, 2)
    cuts = [0, pools[1] + 1, pools[2] + 1, pools[3] + 1, pools[4]]
    stages = [nn.Sequential(*feats[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]
    return Backbone(stages, 512, 8, [128, 256, 512, 512])


def resnet_backbone(depth: int = 50, output_stride: int = 16, pretrained: bool = True,
                    allow_download: bool = True, dilate: bool = True) -> Backbone:
    """ResNet-50/101 with dilation instead of stride in the last stage(s).

    ``dilate=False`` (output stride 16 only) just drops the last stage's stride and keeps dilation 1,
    as the official AMR/IRN ``resnet50(strides=(2, 2, 2, 1))``."""
    from torchvision.models import resnet50, resnet101

    if output_stride not in (8, 16):
        raise ValueError(f"output_stride must be 8 or 16 for ResNet, got {output_stride}")
    name = f"resnet{depth}"
    builder = {50: resnet50, 101: resnet101}.get(depth)
    if builder is None:
        raise ValueError(f"ResNet depth must be 50 or 101, got {depth}")
    weights = load_pretrained(name, allow_download) if pretrained else None
    if not dilate and output_stride != 16:
        raise ValueError("dilate=False keeps dilation 1 and needs output_stride=16")
    dil = [False, output_stride == 8, True] if dilate else [False, False, False]
    net = builder(weights=weights, replace_stride_with_dilation=dil)
    if not dilate:  # strides (2, 2, 2, 1): the first block of layer4 keeps resolution
        net.layer4[0].conv2.stride = (1, 1)
        net.layer4[0].downsample[0].stride = (1, 1)
    stages = [nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1),
              net.layer2, net.layer3, net.layer4]
    return Backbone(stages, 2048, output_stride, [256, 512, 1024, 2048])


def build_backbone(name: str, pretrained: bool = False, output_stride: int = 8,
                   allow_download: bool = True, width: int = 32, quick: bool = False) -> Backbone:
    """Build a backbone by name (one of :data:`BACKBONES`). ``quick`` picks the tiny backbone's
    quick source task (the torchvision backbones ignore it)."""
    if name == "tiny":
        return tiny_backbone(width, pretrained, quick)
    if name == "vgg16":
        return vgg16_backbone(pretrained, allow_download)
    if name in ("resnet50", "resnet101"):
        return resnet_backbone(int(name[6:]), output_stride, pretrained, allow_download)
    raise ValueError(f"unknown backbone {name!r}; expected one of {', '.join(BACKBONES)}")


def count_parameters(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


__all__ = ["BACKBONES", "Backbone", "build_backbone", "count_parameters", "load_pretrained"]
