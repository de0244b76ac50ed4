"""Backbones: output strides, stage channels, and pretrained weights that must be there."""

import pytest
import torch

from wsss_lib.models.backbones import build_backbone
from wsss_lib.models.cam import build_cam_net


@pytest.mark.parametrize("name, os_, ch", [("tiny", 8, 128), ("tiny", 4, 128), ("vgg16", 8, 512), ("resnet50", 16, 2048),
                                           ("resnet50", 8, 2048)])
def test_output_stride_and_channels(name, os_, ch):
    bb = build_backbone(name, output_stride=os_).eval()
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


def test_missing_imagenet_weights_raise_naming_the_file_and_where_to_put_it(monkeypatch, tmp_path):
    from wsss_lib.models.weights import Weights, WeightsUnavailable

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache: never a silent random start
    with pytest.raises(WeightsUnavailable, match=r"vgg16-397923af.pth is not in .*hub/checkpoints.*pretrained=False"):
        build_backbone("vgg16", Weights("imagenet"))
    with pytest.raises(WeightsUnavailable, match="resnet50"):
        Weights("imagenet").identity("resnet50")


def test_unknown_backbone_is_named():
    with pytest.raises(ValueError, match="unknown backbone 'alexnet'"):
        build_backbone("alexnet")
