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

    from wsss_lib.models.weights import pretrained_backbone

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache: never a silent random start
    with pytest.raises(WeightsUnavailable, match=r"vgg16-397923af.pth is not in .*hub/checkpoints.*pretrained=False"):
        pretrained_backbone("vgg16", Weights("imagenet"))
    with pytest.raises(WeightsUnavailable, match="resnet50"):
        Weights("imagenet").identity("resnet50")


def test_unknown_backbone_is_named():
    with pytest.raises(ValueError, match="unknown backbone 'alexnet'"):
        build_backbone("alexnet")


def test_pretrained_backbone_loads_every_tensor_of_the_file_and_freezes_batchnorm(monkeypatch, tmp_path):
    """A torchvision ImageNet file (here: a random ResNet-50 saved where torch hub keeps it) lands in
    every tensor of the backbone cut from it, and its BatchNorm is frozen: the training forward is
    the evaluation forward, and the statistics never move."""
    import torchvision

    from wsss_lib.models.backbones import FrozenBatchNorm2d, has_training_batchnorm
    from wsss_lib.models.weights import Weights, imagenet_file, pretrained_backbone

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(3)
    net = torchvision.models.resnet50(weights=None)
    for m in net.modules():  # statistics unlike a fresh BatchNorm's
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    try:
        imagenet_file("resnet50")
    except FileNotFoundError as e:  # the path it names is where the file goes
        path = e.args[0].split(" is not in ")[1].split(" ($TORCH_HOME")[0]
        name = e.args[0].split(": ")[1].split(" is not in")[0]
    import pathlib
    pathlib.Path(path).mkdir(parents=True)
    torch.save(net.state_dict(), pathlib.Path(path) / name)
    bb = pretrained_backbone("resnet50", Weights("imagenet"), output_stride=16)
    torch.testing.assert_close(bb[0][0].weight, net.conv1.weight)
    torch.testing.assert_close(bb[3][2].bn3.running_var, net.layer4[2].bn3.running_var)
    assert not has_training_batchnorm(bb) and any(isinstance(m, FrozenBatchNorm2d) for m in bb.modules())
    assert has_training_batchnorm(build_backbone("resnet50", output_stride=16))  # random: BatchNorm trains
    x = torch.randn(2, 3, 64, 64)
    bb.train()
    y_train = bb(x)
    bb.eval()
    torch.testing.assert_close(bb(x), y_train)
    torch.testing.assert_close(bb[3][2].bn3.running_var, net.layer4[2].bn3.running_var)  # unchanged by the forward
    assert bb[3][2].bn3.weight.requires_grad  # the affine stays trainable, as the official FixedBatchNorm
