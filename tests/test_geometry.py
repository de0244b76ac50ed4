"""Object geometry in feature cells (wsss_lib.data.geometry) and the receptive field it is compared with."""

import numpy as np
import pytest
import torch
from torch import nn

from wsss_lib.data.geometry import geometry_summary, instance_table, weighted_median
from wsss_lib.data.spec import BenchmarkSpec
from wsss_lib.data.synthetic import render_image
from wsss_lib.models.backbones import receptive_field, tiny_backbone
from wsss_lib.models.cam import build_cam_net


def test_receptive_field_by_hand():
    # 3x3 stride 2: 1 + 2 = 3, jump 2; 3x3 dilation 2: + 2*2*2 = 11, jump 2; 2x2 pool stride 2: + 1*2 = 13
    net = nn.Sequential(nn.Conv2d(1, 1, 3, 2, 1), nn.ReLU(), nn.Conv2d(1, 1, 3, 1, 2, dilation=2), nn.MaxPool2d(2, 2))
    assert receptive_field(net) == 13


def test_receptive_field_of_the_tiny_classifier_and_its_stride_4_form():
    # stride 8: 3, 7, 11, 19, 27, 43, then dilation 2 at jump 8: 75, 107; the head's three 3x3: +16 each
    assert receptive_field(tiny_backbone()) == 107
    assert receptive_field(build_cam_net("tiny", 8)) == 155
    # stride 4: stage 3 at jump 4 with dilation 2 (35, 51), stage 4 dilation 4 (83, 115)
    assert receptive_field(tiny_backbone(output_stride=4)) == 115


def test_stride_4_tiny_takes_the_same_weights_and_doubles_the_cells():
    a, b = tiny_backbone(), tiny_backbone(output_stride=4)
    b.load_state_dict(a.state_dict())  # same parameters: the pretrained weights load unchanged
    assert b(torch.zeros(1, 3, 64, 64)).shape[-1] == 2 * a(torch.zeros(1, 3, 64, 64)).shape[-1] == 16
    with pytest.raises(ValueError, match="output_stride must be 4 or 8 for the tiny backbone, got 16"):
        tiny_backbone(output_stride=16)


def test_weighted_median_by_hand():
    assert weighted_median(np.array([1.0, 2.0, 10.0]), np.array([1.0, 1.0, 1.0])) == 2.0
    assert weighted_median(np.array([1.0, 2.0, 10.0]), np.array([1.0, 1.0, 5.0])) == 10.0


@pytest.mark.parametrize("parts", [1, 2])
def test_instances_partition_the_foreground_and_measure_it(parts):
    spec = BenchmarkSpec(n_train=12, n_val=2, size=64, parts_per_object=parts)
    for i in range(12):
        r = render_image(spec, "train", i)
        assert ((r.instance > 0) == (r.mask > 0)).all()
        for j, c in enumerate(r.objects):  # every visible instance pixel carries its object's class
            assert (r.mask[r.instance == j + 1] == c + 1).all()
    t = instance_table(spec, stride=8, receptive_field=155, n_images=12)
    r0 = render_image(spec, "train", 0)
    ys, xs = np.nonzero(r0.instance == 1)
    row = t[t.image == 0].iloc[0]
    long_px = max(np.ptp(ys), np.ptp(xs)) + 1
    assert row.long_side_cells == long_px / 8 and row.area_cells == len(ys) / 64
    assert row.rf_ratio == pytest.approx(155 / long_px)
    s = geometry_summary(t)
    assert s["instances"] == len(t) and max(s["regions_share"]) <= parts
    with pytest.raises(ValueError, match="stride and receptive_field must be >= 1"):
        instance_table(spec, stride=0, receptive_field=155)


def test_a_stride_the_backbone_cannot_make_is_refused_before_anything_runs():
    from wsss_lib.engine.config import AttentionTrainConfig

    with pytest.raises(ValueError, match=r"output_stride=16 is invalid: expected 4 or 8 for backbone 'tiny'"):
        AttentionTrainConfig.from_params(output_stride=16)  # before: accepted, and the network ran at 8
    with pytest.raises(ValueError, match=r"output_stride=4 is invalid: expected 8 for backbone 'vgg16'"):
        AttentionTrainConfig.from_params(backbone="vgg16", output_stride=4)
    assert AttentionTrainConfig.from_params(output_stride=4).output_stride == 4


def test_the_tiny_width_is_a_parameter_and_must_match_the_pretrained_weights():
    from dataclasses import replace

    from wsss_lib.runs.profile import QUICK
    from wsss_lib.stages.classifier import run_classifier_stage

    net = build_cam_net("tiny", 8, width=16)
    assert net.backbone[0][0].out_channels == 16 and net.head[0].out_channels == 64  # head: 4 x width
    with pytest.raises(ValueError, match=r"width=16 is invalid: expected 32, the width of the profile's pretrained"):
        run_classifier_stage.plan(quick=True, progress=False, width=16)  # planned: nothing is made
    with pytest.raises(ValueError, match=r"width=16 is invalid: expected an integer >= 4 \(and 32 unless backbone"):
        run_classifier_stage.plan(quick=True, progress=False, width=16, backbone="vgg16", pretrained=False)
    narrow = replace(QUICK, pretrain=replace(QUICK.pretrain, width=16))
    a = run_classifier_stage.plan(quick=narrow, progress=False, width=16)
    b = run_classifier_stage.plan(quick=True, progress=False, width=32)
    scratch = run_classifier_stage.plan(quick=True, progress=False, width=16, pretrained=False)
    assert len({a.identity, b.identity, scratch.identity}) == 3
    # the stages that make a classifier for themselves pass the width on
    from wsss_lib.stages.amr import AMRStage
    from wsss_lib.stages.oaa_plus import OAAPlusStage

    assert "width" in AMRStage.inherits and "width" in OAAPlusStage.inherits


def test_the_small_segmentation_network_is_as_wide_as_its_pretrained_backbone():
    from wsss_lib.models.pretrain import PretrainSpec
    from wsss_lib.models.segnet import build_segnet
    from wsss_lib.models.weights import Weights

    class NoLoad(Weights):  # the width is read from the spec; loading is tested elsewhere
        pass

    import wsss_lib.models.weights as wm

    spec = PretrainSpec(width=16, n_train=8, n_heldout=4, size=32, epochs=1)
    orig = wm.load_weights
    try:
        wm.load_weights = lambda bb, name, weights, width=32: bb
        net = build_segnet("small", 9, NoLoad("pretraining-task", spec))
    finally:
        wm.load_weights = orig
    assert net.backbone[0][0].out_channels == 16
    assert build_segnet("small", 9, None).backbone[0][0].out_channels == 32  # from scratch: the default


def test_a_variant_brings_its_network_and_its_pretraining(quick_voc):
    from dataclasses import replace

    from wsss_lib.runs.profile import QUICK
    from wsss_lib.stages.amr import AMRStage
    from wsss_lib.stages.classifier import run_classifier_stage

    mini = run_classifier_stage.plan(data_root="embedded:mini", quick=True, progress=False)
    assert (mini.cfg.output_stride, mini.cfg.width) == (4, 16)
    assert mini.params["weights"][0]["spec"] == QUICK.pretrains["mini"].digest()  # the regions pretraining task
    v1 = run_classifier_stage.plan(quick=True, progress=False)
    assert (v1.cfg.output_stride, v1.cfg.width) == (8, 32) and v1.params["weights"][0]["spec"] == QUICK.pretrain.digest()
    # an explicit value wins; the upstream classifier of an AMR run on mini gets mini's network too
    assert run_classifier_stage.plan(data_root="embedded:mini", quick=True, progress=False, output_stride=8).cfg.output_stride == 8
    amr = AMRStage().plan(data_root="embedded:mini", quick=True, progress=False)
    assert amr.cfg.width == 16 and amr.upstream["init_run"].cfg.width == 16
    # the default variant is a profile setting: "" means it
    as_default = replace(QUICK, default_variant="mini")
    assert run_classifier_stage.plan(quick=as_default, progress=False).identity == \
        run_classifier_stage.plan(data_root="embedded:mini", quick=as_default, progress=False).identity
    # the variant's settings are the tiny network's: another backbone keeps its own stride and width
    from wsss_lib.stages.classifier import ClassifierStage

    vgg = ClassifierStage.Config.from_params(QUICK, data_defaults=QUICK.data_network("embedded:mini", ClassifierStage.Config),
                                             backbone="vgg16")
    assert (vgg.output_stride, vgg.width) == (8, 32)
    with pytest.raises(ValueError, match="data_root='embedded:v7': unknown embedded benchmark 'v7'; expected one of"):
        run_classifier_stage.plan(data_root="embedded:v7", quick=True, progress=False)
