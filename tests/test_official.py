"""Fidelity to the official code: the official AMM, the official AMR network and the official OAA
VGG16 are restated here (from reading JayQine/AMR ``net/amm.py``, ``net/resnet50.py``,
``net/resnet50_amr.py`` and PengtaoJiang/OAA-PyTorch ``models/vgg.py``), given random weights, and
compared with ``wsss_lib``'s modules loaded from their state dicts."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from wsss_lib.models.amm import AMM
from wsss_lib.models.official import OfficialCheckpointError, load_official_checkpoint


# --- restatement of the official AMM (net/amm.py) --------------------------------------------------
def _official_gauss(x, mean, std):
    return torch.exp(-(x - mean) ** 2 / (2 * std ** 2)) / (math.sqrt(2 * math.pi) * std)


class _Flat(nn.Module):
    def forward(self, x):
        return x.flatten(1)


class OfficialChannelGate(nn.Module):
    def __init__(self, c, r=16):
        super().__init__()
        self.mlp = nn.Sequential(_Flat(), nn.Linear(c, c // r), nn.ReLU(), nn.Linear(c // r, c))

    def forward(self, x):
        att = self.mlp(F.avg_pool2d(x, (x.size(2), x.size(3))))  # B x C
        mean, std = att.mean().detach(), att.std().detach()  # whole tensor, unbiased
        return x * _official_gauss(att, mean, std)[:, :, None, None].expand_as(x)


class _OfficialBasicConv(nn.Module):  # conv (no bias) -> BN(momentum 0.01), no ReLU
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, padding=3, bias=False)
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01, affine=True)

    def forward(self, x):
        return self.bn(self.conv(x))


class OfficialSpatialGate(nn.Module):
    def __init__(self):
        super().__init__()
        self.spatial = _OfficialBasicConv()

    def forward(self, x):
        pooled = torch.cat([x.max(1)[0][:, None], x.mean(1)[:, None]], dim=1)  # (max, mean)
        out = self.spatial(pooled)
        return x * _official_gauss(out, out.mean().detach(), out.std().detach())


class OfficialAMM(nn.Module):
    def __init__(self, c, r=16):
        super().__init__()
        self.ChannelAMM = OfficialChannelGate(c, r)
        self.SpatialAMM = OfficialSpatialGate()

    def forward(self, x):
        return self.SpatialAMM(self.ChannelAMM(x))


def _randomize_bn(module: nn.Module, gen: torch.Generator) -> None:
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
            m.weight.data.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)


@pytest.mark.parametrize("channels,reduction", [(64, 16), (48, 4)])
def test_amm_from_official_matches_the_official_module(channels, reduction):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    off = OfficialAMM(channels, reduction)
    _randomize_bn(off, gen)
    ours = AMM.from_official(off.state_dict())
    assert ours.form == "official" and ours.channel.mlp[0].out_channels == channels // reduction
    for mode in ("train", "eval"):
        off.train(mode == "train")
        ours.train(mode == "train")
        for _ in range(2):  # twice: BN running statistics must move the same way in train mode
            x = torch.randn(3, channels, 9, 11)
            y_off, y_ours = off(x), ours(x)
            assert (y_off - y_ours).abs().max().item() < 1e-5, mode
            assert y_off.abs().max().item() > 1e-3  # not trivially zero
        assert torch.allclose(off.SpatialAMM.spatial.bn.running_mean, ours.spatial.bn.running_mean, atol=1e-7)


def test_paper_form_differs_from_the_official_form():
    """The paper form (per-image stats, population std, no normalization, mean pool) is another
    module: loading the official weights into it is refused rather than silently approximated."""
    off = OfficialAMM(32, 16)
    paper = AMM(32, 16)
    with pytest.raises(RuntimeError):
        paper.load_state_dict(AMM.official_to_ours(off.state_dict()))


def test_amm_from_official_rejects_a_foreign_state_dict():
    with pytest.raises(KeyError, match="ChannelAMM.mlp.1.weight"):
        AMM.from_official({"foo.weight": torch.zeros(1)})


# --- restatement of the official AMR network (net/resnet50.py + net/resnet50_amr.py) ------------------
class _FixedBN(nn.BatchNorm2d):
    def forward(self, x):
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, training=False, eps=self.eps)


class OfficialBottleneck(nn.Module):
    def __init__(self, cin, planes, stride=1, downsample=None, use_amm=False):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, planes, 1, bias=False), _FixedBN(planes)
        self.conv2, self.bn2 = nn.Conv2d(planes, planes, 3, stride, padding=1, bias=False), _FixedBN(planes)
        self.conv3, self.bn3 = nn.Conv2d(planes, 4 * planes, 1, bias=False), _FixedBN(4 * planes)
        self.downsample, self.use_amm = downsample, use_amm
        if use_amm:
            self.amm = OfficialAMM(4 * planes, 16)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        res = self.downsample(x) if self.downsample is not None else x
        if self.use_amm:
            out = self.amm(out)
        return F.relu(out + res)


class OfficialResNet50(nn.Module):
    def __init__(self, use_amm=False, strides=(2, 2, 2, 1)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, strides[0], padding=3, bias=False)
        self.bn1 = _FixedBN(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.cin = 64
        self.layer1 = self._layer(64, 3, 1, use_amm)
        self.layer2 = self._layer(128, 4, strides[1], use_amm)
        self.layer3 = self._layer(256, 6, strides[2], use_amm)
        self.layer4 = self._layer(512, 3, strides[3], use_amm)

    def _layer(self, planes, n, stride, use_amm):
        down = None
        if stride != 1 or self.cin != 4 * planes:
            down = nn.Sequential(nn.Conv2d(self.cin, 4 * planes, 1, stride, bias=False), _FixedBN(4 * planes))
        blocks = [OfficialBottleneck(self.cin, planes, stride, down, use_amm)]
        self.cin = 4 * planes
        blocks += [OfficialBottleneck(self.cin, planes, use_amm=use_amm) for _ in range(1, n)]
        return nn.Sequential(*blocks)


class OfficialAMRNet(nn.Module):
    """The official ``Net``'s modules with their aliases (so its state dict has every alias key),
    and the official ``CAM`` forward (step 1: spotlight, step 2: compensation)."""

    def __init__(self, num_classes=20):
        super().__init__()
        self.resnet50 = OfficialResNet50()
        r = self.resnet50
        self.stage1 = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool, r.layer1)
        self.stage2, self.stage3, self.stage4 = nn.Sequential(r.layer2), nn.Sequential(r.layer3), nn.Sequential(r.layer4)
        self.classifier = nn.Conv2d(2048, num_classes, 1, bias=False)
        self.resnet50_2 = OfficialResNet50(use_amm=True)
        r2 = self.resnet50_2
        self.stage2_1 = nn.Sequential(r2.conv1, r2.bn1, r2.relu, r2.maxpool, r2.layer1)
        self.stage2_2, self.stage2_3, self.stage2_4 = (nn.Sequential(r2.layer2), nn.Sequential(r2.layer3),
                                                       nn.Sequential(r2.layer4))
        self.classifier2 = nn.Conv2d(2048, num_classes, 1, bias=False)
        self.backbone = nn.ModuleList([self.stage1, self.stage2, self.stage3, self.stage4])
        self.backbone2 = nn.ModuleList([self.stage2_1, self.stage2_2, self.stage2_3, self.stage2_4])
        self.newly_added = nn.ModuleList([self.classifier, self.classifier2])

    def cam(self, x, step):
        if step == 1:
            return F.conv2d(self.stage4(self.stage3(self.stage2(self.stage1(x)))), self.classifier.weight)
        return F.conv2d(self.stage2_4(self.stage2_3(self.stage2_2(self.stage2_1(x)))), self.classifier2.weight)


@pytest.fixture(scope="module")
def official_amr():
    torch.manual_seed(3)
    net = OfficialAMRNet(num_classes=5)
    _randomize_bn(net, torch.Generator().manual_seed(4))
    for m in net.modules():  # keep activations in a sane range through 16 random bottlenecks
        if isinstance(m, nn.Conv2d) and m.kernel_size != (7, 7):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            m.weight.data.mul_(0.5)
    return net.eval()


def test_official_amr_checkpoint_round_trips(official_amr, tmp_path):
    sd = official_amr.state_dict()
    assert any(k.startswith("stage2_1.") for k in sd) and any(".amm.SpatialAMM.spatial.bn." in k for k in sd)
    path = tmp_path / "res50_amr.pth"
    torch.save({k: v.clone() for k, v in sd.items()}, path)
    ours = load_official_checkpoint(path, "amr")
    assert not ours.training and ours.spotlight.num_classes == 5
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        F_s, F_c = ours(x)
        ref_s, ref_c = official_amr.cam(x, 1), official_amr.cam(x, 2)
    assert F_s.shape == ref_s.shape == (2, 5, 4, 4)  # output stride 16, no dilation
    for got, ref in ((F_s, ref_s), (F_c, ref_c)):
        assert ref.abs().max() > 1e-3
        assert (got - ref).abs().max().item() <= 1e-4 * max(1.0, ref.abs().max().item())


def test_official_amr_checkpoint_wrapped_and_prefixed(official_amr):
    sd = {"state_dict": {f"module.{k}": v for k, v in official_amr.state_dict().items()}}
    assert load_official_checkpoint(sd, "amr").compensation.num_classes == 5


def test_official_amr_checkpoint_errors_name_the_key(official_amr):
    sd = dict(official_amr.state_dict())
    bad = dict(sd)
    bad.pop("resnet50_2.layer3.2.amm.SpatialAMM.spatial.conv.weight")
    with pytest.raises(OfficialCheckpointError, match="missing a tensor for 'compensation.backbone.2.2.bn3.1.spatial.conv.weight'"):
        load_official_checkpoint(bad, "amr")
    bad = dict(sd, **{"resnet50.fc.weight": torch.zeros(3)})
    with pytest.raises(OfficialCheckpointError, match="unexpected key 'resnet50.fc.weight'"):
        load_official_checkpoint(bad, "amr")
    bad = dict(sd, **{"resnet50.layer2.0.conv1.weight": torch.zeros(128, 256, 3, 3)})
    with pytest.raises(OfficialCheckpointError, match=r"shape mismatch for 'resnet50.layer2.0.conv1.weight'.*\(128, 256, 3, 3\)"):
        load_official_checkpoint(bad, "amr")
    with pytest.raises(OfficialCheckpointError, match="missing key 'extra_convs.6.weight'"):
        load_official_checkpoint(sd, "oaa")


# --- restatement of the official OAA VGG16 (models/vgg.py, cfg 'D1'; vgg1.py has the same layers) ---------
def _official_vgg_features():
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "N", 512, 512, 512]
    layers, cin = [], 3
    for i, v in enumerate(cfg):
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        elif v == "N":
            layers.append(nn.MaxPool2d(3, 1, 1))
        else:
            dil = 2 if i > 13 else 1
            layers += [nn.Conv2d(cin, v, 3, padding=dil, dilation=dil), nn.ReLU(inplace=True)]
            cin = v
    return nn.Sequential(*layers)


class OfficialOAAVGG(nn.Module):
    def __init__(self, num_classes=20):
        super().__init__()
        self.features = _official_vgg_features()
        self.extra_convs = nn.Sequential(nn.Conv2d(512, 512, 3, padding=1), nn.ReLU(True),
                                         nn.Conv2d(512, 512, 3, padding=1), nn.ReLU(True),
                                         nn.Conv2d(512, 512, 3, padding=1), nn.ReLU(True),
                                         nn.Conv2d(512, num_classes, 1))

    def forward(self, x):  # the class-aware maps (``map1`` of the official forward)
        return self.extra_convs(self.features(x))


def test_official_oaa_checkpoint_round_trips(tmp_path):
    torch.manual_seed(5)
    off = OfficialOAAVGG(num_classes=6).eval()
    for m in off.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.normal_(m.bias, std=0.05)
    torch.save({"state_dict": off.state_dict()}, tmp_path / "oaa.pth")
    ours = load_official_checkpoint(tmp_path / "oaa.pth", "oaa")
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        ref, got = off(x), ours(x)
    assert got.shape == ref.shape == (1, 6, 6, 6)  # output stride 8
    assert (got - ref).abs().max().item() <= 1e-4 * max(1.0, ref.abs().max().item())
    bad = {k: v for k, v in off.state_dict().items() if k != "features.10.weight"}
    with pytest.raises(OfficialCheckpointError, match="missing a tensor for 'backbone.1.0.weight'"):
        load_official_checkpoint(bad, "oaa")


def test_official_checkpoint_missing_or_corrupt_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_official_checkpoint(tmp_path / "nope.pth", "amr")
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(OfficialCheckpointError, match="bad.pth"):
        load_official_checkpoint(tmp_path / "bad.pth", "amr")


def test_amr_stage_scores_an_official_checkpoint(tmp_path, quick_voc):
    """``init_from`` = an official AMR checkpoint: no training, our batched inference, metrics."""
    import json

    from wsss_lib.stages.amr import run_amr_stage

    torch.manual_seed(7)
    net = OfficialAMRNet(num_classes=8)  # the quick benchmark's 8 classes
    torch.save(net.state_dict(), tmp_path / "res50_amr.pth")
    run = run_amr_stage(run_dir=str(tmp_path / "run"), init_from=str(tmp_path / "res50_amr.pth"),
                        backbone="resnet50", output_stride=16, quick=True, progress=False)
    m = json.loads((run / "metrics.json").read_text())
    assert m["train_seconds"] == 0.0 and 0 <= m["amr_miou"] <= 1 and "amr_xi0.5_miou" in m
    params = json.loads((run / "params.json").read_text())["params"]
    assert params["init_from"] == "res50_amr.pth" and len(params["official_checkpoint_sha256"]) == 64
    torch.save(OfficialAMRNet(num_classes=3).state_dict(), tmp_path / "k3.pth")
    with pytest.raises(ValueError, match="3 classes.*8 foreground classes"):
        run_amr_stage(run_dir=str(tmp_path / "run3"), init_from=str(tmp_path / "k3.pth"), backbone="resnet50",
                      output_stride=16, quick=True, progress=False)


def test_classifier_stage_scores_an_official_oaa_checkpoint(tmp_path, quick_voc):
    """Notebook 01's ``init_from`` = an official OAA/OAA+ checkpoint: its CAMs scored, nothing trained."""
    import json

    from wsss_lib.stages.classifier import run_classifier_stage

    torch.manual_seed(8)
    torch.save({"state_dict": OfficialOAAVGG(num_classes=8).state_dict()}, tmp_path / "oaa.pth")
    run = run_classifier_stage(run_dir=str(tmp_path / "run"), init_from=str(tmp_path / "oaa.pth"), quick=True,
                               progress=False)
    m = json.loads((run / "metrics.json").read_text())
    assert m["train_seconds"] == 0.0 and 0 <= m["cam_miou"] <= 1 and "oaa_max_miou" not in m
    assert json.loads((run / "params.json").read_text())["params"]["init_from"] == "oaa.pth"
    with pytest.raises(ValueError, match="parameter init_from='nope.pth'"):
        run_classifier_stage(run_dir=str(tmp_path / "r2"), init_from="nope.pth", quick=True, progress=False)
