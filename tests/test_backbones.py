"""Backbones: output strides, stage channels, and the pretrained-weights fallback."""

import pytest
import torch

from wsss_lib.models.backbones import build_backbone
from wsss_lib.models.cam import build_cam_net


@pytest.mark.parametrize("name, os_, ch", [("tiny", 8, 128), ("vgg16", 8, 512), ("resnet50", 16, 2048),
                                           ("resnet50", 8, 2048)])
def test_output_stride_and_channels(name, os_, ch):
    bb = build_backbone(name, pretrained=False, output_stride=os_).eval()
    with torch.no_grad():
        y = bb(torch.randn(1, 3, 64, 64))
    assert y.shape == (1, ch, 64 // os_, 64 // os_)
    assert bb.output_stride == os_ and bb.out_channels == ch and len(bb) == 4


def test_cam_net_head_and_param_groups():
    net = build_cam_net("tiny", 5)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 5, 4, 4)
    groups = {g["name"]: g for g in net.param_groups(0.01, 2e-4)}
    assert groups["backbone"]["lr"] == 0.01
    assert groups["head_w"]["lr"] == pytest.approx(0.1) and groups["head_b"]["lr"] == pytest.approx(0.2)
    assert groups["head_b"]["weight_decay"] == 0.0
    n_head = sum(p.numel() for g in ("head_w", "head_b") for p in groups[g]["params"])
    assert n_head == sum(p.numel() for p in net.head.parameters()) + sum(p.numel() for p in net.classifier.parameters())


def test_missing_pretrained_weights_warn_and_fall_back(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache
    with pytest.warns(UserWarning, match="pretrained ImageNet weights for vgg16 are not in the torch hub cache"):
        bb = build_backbone("vgg16", pretrained=True, allow_download=False)
    assert bb.out_channels == 512


def test_unknown_backbone_is_named():
    with pytest.raises(ValueError, match="unknown backbone 'alexnet'"):
        build_backbone("alexnet")
