"""AMM and AMR: shapes, the Gaussian, the threshold, gradients, the xi mix."""

import math

import pytest
import torch

from wsss_lib.models.amm import AMM, gaussian_modulation, gaussian_stats, threshold_modulation
from wsss_lib.models.amr import ResidualAMM, build_amr, insert_amm, weighted_cam
from wsss_lib.models.cam import build_cam_net


def test_gaussian_peaks_at_the_mean_by_hand():
    x = torch.tensor([1.0, 2.0, 3.0])
    mu, sigma = gaussian_stats(x[None])  # mean 2, std sqrt(2/3)
    assert mu.item() == pytest.approx(2.0) and sigma.item() == pytest.approx(math.sqrt(2 / 3))
    g = gaussian_modulation(x[None], mu, sigma)[0]
    assert g[1].item() == pytest.approx(1.0)
    assert g[0].item() == pytest.approx(math.exp(-1 / (2 * 2 / 3)))
    assert g[0].item() == pytest.approx(g[2].item()) and g[0] < g[1]
    gn = gaussian_modulation(x[None], mu, sigma, normalize=True)[0]
    assert gn[1].item() == pytest.approx(1 / (math.sqrt(2 * math.pi) * math.sqrt(2 / 3)))


def test_gaussian_stats_per_sample_vs_batch():
    x = torch.tensor([[0.0, 2.0], [10.0, 12.0]])
    mu, _ = gaussian_stats(x, "sample")
    assert mu.flatten().tolist() == [1.0, 11.0]
    mu_b, sd_b = gaussian_stats(x, "batch")
    assert mu_b.item() == 6.0 and sd_b.item() == pytest.approx(math.sqrt((36 + 16 + 16 + 36) / 4))


def test_threshold_zeroes_values_below():
    g = torch.tensor([0.1, 0.5, 0.49, 0.9])
    assert threshold_modulation(g, 0.5).tolist() == pytest.approx([0.0, 0.5, 0.0, 0.9])


@pytest.mark.parametrize("kw", [{}, {"spatial_pool": "maxavg", "stats": "batch", "normalize": True}, {"form": "official"},
                                {"threshold": 0.3}])
def test_amm_preserves_shape(kw):
    f = torch.randn(2, 32, 9, 7)
    assert AMM(32, **kw)(f).shape == f.shape


def test_amm_modulates_the_most_activated_channel_down():
    """A channel far above the others sits in the Gaussian's tail: it is damped the most."""
    amm = AMM(8, reduction=1)
    with torch.no_grad():  # identity-like gate: H passes the pooled value through (up to ReLU)
        amm.channel.mlp[0].weight.copy_(torch.eye(8).view(8, 8, 1, 1))
        amm.channel.mlp[0].bias.zero_()
        amm.channel.mlp[2].weight.copy_(torch.eye(8).view(8, 8, 1, 1))
        amm.channel.mlp[2].bias.zero_()
    f = torch.ones(1, 8, 4, 4)
    f[:, 0] = 10.0
    out = amm.channel(f)
    ratio = out[0, :, 0, 0] / f[0, :, 0, 0]
    assert ratio[0] < 0.1 and (ratio[1:] > 0.5).all()


def test_insert_amm_placements():
    net = insert_amm(build_cam_net("tiny", 3), "stage")
    assert sum(isinstance(m, AMM) for m in net.modules()) == 4
    assert net(torch.randn(1, 3, 32, 32)).shape == (1, 3, 4, 4)
    res = insert_amm(build_cam_net("tiny", 3))  # the default: residual
    assert sum(isinstance(m, ResidualAMM) for m in res.modules()) == sum(isinstance(m, AMM) for m in res.modules()) == 4
    assert res(torch.randn(1, 3, 32, 32)).shape == (1, 3, 4, 4)
    with pytest.raises(ValueError, match="needs a ResNet"):
        insert_amm(build_cam_net("tiny", 3), "bottleneck")
    rn = insert_amm(build_cam_net("resnet50", 3, output_stride=16), "bottleneck")
    assert sum(isinstance(m, AMM) for m in rn.modules()) == 16  # 3 + 4 + 6 + 3 bottlenecks


def test_gradients_reach_compensation_and_not_a_frozen_spotlight():
    amr = build_amr("tiny", 3, freeze_spotlight=True)
    amr.train()
    assert not amr.spotlight.training  # frozen BN statistics
    F_s, F_c = amr(torch.randn(2, 3, 32, 32))
    (F_s.mean() + F_c.mean()).backward()
    assert all(p.grad is None for p in amr.spotlight.parameters())
    comp_grads = [p.grad for p in amr.compensation.parameters() if p.requires_grad]
    assert comp_grads and all(g is not None for g in comp_grads)
    assert any(g.abs().sum() > 0 for g in comp_grads)
    names = {g["name"] for g in amr.param_groups(0.1, 0.0)}
    assert "backbone" in names and len(amr.param_groups(0.1, 0.0)) == 3  # compensation only

    amr2 = build_amr("tiny", 3, freeze_spotlight=False)
    F_s, F_c = amr2(torch.randn(2, 3, 32, 32))
    F_s.mean().backward()
    assert all(p.grad is not None for p in amr2.spotlight.parameters())


def test_xi_mix_equals_the_formula():
    Ms, Mc = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4)
    for xi in (0.0, 0.3, 1.0):
        torch.testing.assert_close(weighted_cam(Ms, Mc, xi), xi * Ms + (1 - xi) * Mc)
    assert torch.equal(weighted_cam(Ms, Mc, 1.0), Ms)
    with pytest.raises(ValueError, match="xi"):
        weighted_cam(Ms, Mc, 1.5)


def test_official_preset_resolves_and_explicit_parameters_win():
    from wsss_lib.stages.amr import AMRConfig

    c = AMRConfig.from_params(preset="official")
    assert (c.amm_form, c.cps_maps, c.w_cps, c.detach_stem, c.freeze_spotlight) == ("official", "raw", 0.05, True, True)
    assert c.placement == "residual"  # tiny has no bottlenecks: after each stage, beside an identity path
    assert AMRConfig.from_params(preset="official", backbone="resnet50").placement == "bottleneck"
    assert AMRConfig.from_params(preset="official", w_cps=0.5).w_cps == 0.5
    d = AMRConfig.from_params()
    assert (d.amm_form, d.cps_maps, d.w_cps, d.detach_stem) == ("paper", "normalized", 1.0, False)
    with pytest.raises(ValueError, match="parameter preset='oficial'"):
        AMRConfig.from_params(preset="oficial")
    with pytest.raises(ValueError, match="parameter placement='bottleneck'"):
        AMRConfig.from_params(placement="bottleneck")
    with pytest.raises(ValueError, match="parameter cps_maps='abs'"):
        AMRConfig.from_params(cps_maps="abs")


def test_detach_stem_stops_gradients_at_the_first_stage():
    torch.manual_seed(0)
    net = build_amr("tiny", 4, detach_stem=True, form="official")
    F_s, F_c = net(torch.randn(2, 3, 32, 32))
    F_c.sum().backward()
    comp = net.compensation.backbone
    assert all(p.grad is None for p in comp[0].parameters())
    assert all(p.grad is not None for p in comp[1].parameters())
    stem = {id(p) for p in comp[0].parameters()}
    assert not any(id(p) in stem for g in net.param_groups(0.01, 0.0) for p in g["params"])


@pytest.mark.parametrize("kw,match", [({"seed": "abc"}, "parameter seed='abc' is invalid"),
                                      ({"seed": -1}, "parameter seed=-1 is invalid"),
                                      ({"device": "gpu"}, "parameter device='gpu' is invalid"),
                                      ({"quick": "yes"}, "parameter quick='yes' is invalid")])
def test_run_arguments_fail_before_any_folder_is_made(tmp_path, kw, match):
    from wsss_lib.stages.amr import run_amr_stage
    from wsss_lib.stages.classifier import run_classifier_stage

    for stage in (run_classifier_stage, run_amr_stage):
        with pytest.raises(ValueError, match=match):
            stage(run_dir=str(tmp_path / "run"), progress=False, **kw)
    assert not (tmp_path / "run").exists()


def _zero_amms(monkeypatch):
    """Every AMM returns zeros: what passes a stage is only what does not go through an AMM."""
    monkeypatch.setattr(AMM, "forward", lambda self, f: torch.zeros_like(f))


def _as_compensation(spotlight_state: dict, compensation) -> dict:
    """The spotlight branch's weights under the compensation branch's keys (a stage ``backbone.i`` is
    ``backbone.i.0`` there, beside its AMM)."""
    keys = set(compensation.state_dict())
    out = {}
    for k, v in spotlight_state.items():
        parts = k.split(".")
        staged = ".".join([*parts[:2], "0", *parts[2:]]) if parts[0] == "backbone" else k
        out[staged if staged in keys else k] = v
    return out


def test_default_placement_keeps_an_identity_path_as_the_official_bottleneck(monkeypatch):
    """The official network (JayQine/AMR net/resnet50.py, restated: ``out = relu(amm(bn3(conv3(...))) +
    residual)``) puts every AMM on a residual branch, so with the AMMs silenced each block still passes
    ``relu(residual)``: an unmodulated path always goes through. The default placement keeps that
    property on a backbone without bottlenecks: silenced AMMs leave the compensation branch computing
    the spotlight branch's function (the report's literal ``"stage"`` placement passes nothing)."""
    from wsss_lib.stages.amr import AMRConfig

    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    _zero_amms(monkeypatch)
    cfg = AMRConfig.from_params()
    amr = build_amr("tiny", 3, None, placement=cfg.placement, width=8)  # BatchNorm on batch statistics
    missing = amr.compensation.load_state_dict(_as_compensation(amr.spotlight.state_dict(), amr.compensation),
                                               strict=False).missing_keys
    assert missing and all(".amm." in k or k.split(".")[3] in ("channel", "spatial") for k in missing)  # AMMs only
    with torch.no_grad():
        assert torch.equal(amr.compensation(x), amr.spotlight(x))
        bb = insert_amm(build_cam_net("tiny", 3, width=8), "stage").eval()
        assert bb.backbone(x).abs().max() == 0  # the literal reading: nothing unmodulated passes
    # the official bottleneck with its AMM silenced passes relu(residual): restated block by block
    from torchvision.models.resnet import Bottleneck

    rn = build_amr("resnet50", 3, None, output_stride=16, placement="bottleneck", head_convs=0).eval().compensation
    with torch.no_grad():
        f = x
        for stage in rn.backbone:
            for m in stage.children() if isinstance(stage, torch.nn.Sequential) else [stage]:
                blocks = [b for b in m.modules() if isinstance(b, Bottleneck)] if not isinstance(m, Bottleneck) else [m]
                if not blocks:
                    f = m(f)
                for b in blocks:
                    f = torch.relu(b.downsample(f) if b.downsample is not None else f)
        assert torch.equal(rn.classifier(rn.head(f)), rn(x))
