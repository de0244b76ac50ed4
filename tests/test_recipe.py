"""Fidelity of the recipes around the formulas: step sizes, parameter groups, network modes,
initializations and fallbacks, each against a restatement of the official code (read from its
repository: PengtaoJiang/OAA-PyTorch ``scripts/train_iam.py``, ``train_iam.sh``, ``models/vgg1.py``;
JayQine/AMR ``step/train_amr.py``, ``net/resnet50_amr.py``, ``net/resnet50.py``, ``misc/torchutils.py``),
and the health figures every run records."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from wsss_lib.engine.health import empty_map_share, health_metrics, never_active_share
from wsss_lib.formulas.attention import class_scores
from wsss_lib.formulas.losses import OAA_PLUS_LOSSES, multilabel_bce
from wsss_lib.models.backbones import FrozenBatchNorm2d, has_training_batchnorm
from wsss_lib.models.cam import CAMNet, build_cam_net
from wsss_lib.runs.profile import FULL
from wsss_lib.stages import get_stage


# --- restatement of the official OAA+ step (OAA-PyTorch scripts/train_iam.py + train_iam.sh) ----------
def _official_exloss(logits, target):
    """ExLoss: positives ``target > 0.001`` give ``-t log(sigmoid(x))``, the rest ``-log(1 - sigmoid(x)
    + 1e-8)``; each sum over the whole batch divided by its own count."""
    pos, neg = target > 0.001, target <= 0.001
    loss = torch.zeros(())
    if pos.sum() > 0:
        loss = loss + (-target[pos] * torch.log(torch.sigmoid(logits[pos]))).sum() / pos.sum().float()
    if neg.sum() > 0:
        loss = loss + (-torch.log(1 - torch.sigmoid(logits[neg]) + 1e-8)).sum() / neg.sum().float()
    return loss


def _official_oaa_plus_step(model, views, soft):
    """train_iam.sh: lr 1e-3, batch 5; train_iam.py: groups (weights 1x, biases 2x, new weights 10x,
    new biases 20x), ``loss.backward()`` on every batch and ``optimizer.step()`` every ``iter_size`` = 5
    batches, the loss *not* divided by iter_size. The step of the new layers' weights: 10 * 1e-3 * |grad|."""
    model.zero_grad()
    for i in range(5):
        _official_exloss(model(views[5 * i:5 * i + 5]).float(), soft[5 * i:5 * i + 5]).backward()
    new_w = [m.weight for m in [*model.head.modules(), model.classifier] if isinstance(m, nn.Conv2d)]
    return 10 * 1e-3 * float(torch.sqrt(sum((p.grad ** 2).sum() for p in new_w)))


def _our_step(model, groups, loss):
    model.zero_grad()
    loss.backward()
    g = next(g for g in groups if g["name"] == "head_w")
    return g["lr"] * float(torch.sqrt(sum((p.grad ** 2).sum() for p in g["params"])))


@pytest.fixture(scope="module")
def probe_batch(quick_voc):
    """25 quick-benchmark images at 64 px, their labels and soft labels at the network's output
    resolution: each present class's object region (from the masks) at random strengths, as the
    normalized accumulated maps OAA+ trains on."""
    from wsss_lib.data.voc import VOCLayout, VOCSegDataset
    from wsss_lib.engine.loop import make_views
    from wsss_lib.data.transforms import ViewGeometry

    layout = VOCLayout(quick_voc, "train")
    ds = VOCSegDataset(layout, with_mask=True)
    samples = [ds[i] for i in range(25)]
    views = make_views(torch.stack([s["image"] for s in samples]), ViewGeometry().as_tensor().expand(25, 5).clone(),
                       64, torch.device("cpu"))
    labels = torch.stack([s["label"] for s in samples]).float()
    masks = torch.stack([s["mask"] for s in samples]).long()
    k = labels.shape[1]
    onehot = torch.stack([(masks == c + 1) for c in range(k)], 1).float()
    soft = nn.functional.adaptive_avg_pool2d(onehot, 8)  # 64 px at output stride 8
    g = torch.Generator().manual_seed(0)
    soft = soft * (0.3 + 0.7 * torch.rand(soft.shape, generator=g)) * (soft > 0.2)
    return views, labels, soft


def _fresh_net():
    """The network OAA+ starts from: the tiny backbone pretrained on the (quick) pretraining task, BatchNorm
    frozen, a new head; the same initial weights at every call."""
    from wsss_lib.models.weights import weights_for
    from wsss_lib.runs.profile import QUICK

    torch.manual_seed(0)
    return build_cam_net("tiny", 8, weights_for("tiny", True, QUICK.pretrain), output_stride=8,
                         width=QUICK.pretrain.width)


@pytest.mark.parametrize("loss", sorted(OAA_PLUS_LOSSES))
def test_oaa_plus_first_step_is_within_2x_of_the_official_step(loss, probe_batch):
    """The step of the default recipe (lr and multipliers of the resolved config, the loss's own
    normalization) against train_iam.py's on the same tensors. The paper's losses summed over the
    classes at the classifier's lr stepped about 17x the official step on the default benchmark
    (reports/first_step.md, where the classifier's step is measured too)."""
    views, labels, soft = probe_batch
    cfg = get_stage("oaa_plus").config(FULL, loss=loss)  # the resolved default recipe for this loss
    official = _official_oaa_plus_step(_fresh_net(), views, soft)
    net = _fresh_net()
    groups = net.param_groups(cfg.lr, cfg.weight_decay)
    ours = _our_step(net, groups, OAA_PLUS_LOSSES[loss](net(views).float(), soft))
    assert 0.5 <= ours / official <= 2.0, f"OAA+ ({loss}) steps {ours:.4f}, the official OAA+ {official:.4f}"


def test_the_first_step_module_computes_the_official_step_as_the_restatement(probe_batch):
    """wsss_lib.speed.first_step (which reports/first_step.md comes from) agrees with the restatement."""
    from wsss_lib.speed.first_step import first_steps

    views, labels, soft = probe_batch
    lrs = {"classifier": 0.01, **{k: 5e-3 for k in OAA_PLUS_LOSSES}}
    steps = first_steps(views, labels, soft, _fresh_net, lrs)
    assert steps["official OAA+"] == pytest.approx(_official_oaa_plus_step(_fresh_net(), views, soft), rel=1e-4)


# --- restatement of AMR's official parameter groups (JayQine/AMR step/train_amr.py, net/resnet50_amr.py) --
def _official_amr_multiplier(name: str) -> float | None:
    """train_amr.py's PolyOptimizer groups over Net.trainable_parameters(): (backbone, backbone2,
    newly_added) at (1, 10, 0.1) x cam_learning_rate. backbone = the spotlight's stages, backbone2 the
    compensation branch's (its AMMs inside them), newly_added = (classifier, classifier2). Returns the
    multiplier of one of our parameters by the official module it corresponds to."""
    if name.startswith("spotlight.classifier") or name.startswith("compensation.classifier"):
        return 0.1
    if name.startswith("compensation.backbone"):
        return 10.0
    if name.startswith("spotlight.backbone"):
        return 1.0
    return None  # no official counterpart


def _official_gets_gradient(name: str) -> bool:
    """In the official forward, the spotlight's stages are detached (x = self.stage1(x).detach() ...), and
    so is the compensation branch's first stage (x2 = self.stage2_1(x_ori).detach()); conv1 and bn1
    have requires_grad False (Net.train). The spotlight classifier still gets the CPS gradient."""
    if name.startswith("spotlight.backbone") or name.startswith("compensation.backbone.0."):
        return False
    return True


def test_amr_official_preset_has_the_official_parameter_groups():
    from wsss_lib.stages.amr import AMRConfig
    from wsss_lib.models.amr import build_amr

    cfg = AMRConfig.from_params(FULL, preset="official", backbone="resnet50", output_stride=16, head_convs=0)
    assert (cfg.lr_groups, cfg.weight_decay, cfg.momentum) == ("official", 1e-4, 1e-4)  # run_sample.py, PolyOptimizer
    net = build_amr("resnet50", 20, None, output_stride=16, placement=cfg.placement, head_convs=cfg.head_convs,
                    freeze_spotlight=cfg.freeze_spotlight, detach_stem=cfg.detach_stem, form=cfg.amm_form)
    lr = 0.01
    groups = net.param_groups(lr, cfg.weight_decay, cfg.lr_groups)
    ours = {id(p): g["lr"] / lr for g in groups for p in g["params"]}
    assert all(g["weight_decay"] == cfg.weight_decay for g in groups)  # the official groups all decay
    named = dict(net.named_parameters())
    for name, p in named.items():
        official = _official_amr_multiplier(name)
        assert official is not None, f"{name} has no counterpart in the official network (no head convs)"
        if id(p) in ours:
            assert ours[id(p)] == pytest.approx(official), f"{name}: ours x{ours[id(p)]}, official x{official}"
            assert _official_gets_gradient(name), f"{name} is trained here, the official code gives it no gradient"
        elif _official_gets_gradient(name):
            # the one documented difference: the frozen spotlight's classifier (the official CPS moves it)
            assert name.startswith("spotlight.classifier"), f"{name} is trained officially (x{official}), not here"
    comp_l2 = [p for n, p in named.items() if n.startswith("compensation.backbone.1.")]
    assert comp_l2 and all(ours[id(p)] == pytest.approx(10.0) for p in comp_l2)


def test_amr_default_groups_are_the_classifiers():
    from wsss_lib.models.amr import build_amr

    net = build_amr("tiny", 8, None, width=16, freeze_spotlight=True)
    names = {g["name"]: g["lr"] for g in net.param_groups(0.01, 2e-4)}
    assert names == {"backbone": 0.01, "head_w": pytest.approx(0.1), "head_b": pytest.approx(0.2)}


# --- one network mode --------------------------------------------------------------------------------------
def test_the_store_and_the_cam_read_one_network(quick_voc):
    """A pretrained backbone's BatchNorm is frozen: after training, the CAM recomputed from the model
    in the mode the OAA store was fed (training mode) equals the published CAM row's maps."""
    from wsss_lib.data.voc import VOCLayout, VOCSegDataset
    from wsss_lib.engine.common import build_attention_net, infer_attention, training_set
    from wsss_lib.runs.attention_io import load_attention
    from wsss_lib.util.io import read_json, torch_load

    stage = get_stage("classifier")
    plan = stage.plan(quick=True, progress=False)
    from wsss_lib.stages.base import execute_plan

    run = execute_plan(plan, progress=False)
    assert read_json(run / "metrics.json")["store_forward_eval"] == 0.0  # pretrained: frozen BatchNorm
    ts = training_set(plan.root, plan.cfg.crop_size, plan.cfg.output_stride)
    model = build_attention_net(plan.cfg, ts.num_classes, plan.weights)
    model.load_state_dict(torch_load(run / "checkpoint.pt")["model"])
    assert not has_training_batchnorm(model)

    class TrainMode(nn.Module):  # infer_attention puts its model in eval mode: this one stays in training mode
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            self.m.train()
            return self.m(x)

    maps, _ = infer_attention(TrainMode(model), ts.dataset, ts.size, ts.crop, torch.device("cpu"))
    cam = load_attention(run / "attention" / "cam.pt")
    assert (cam["maps"].flatten(1).amax(1) > 0).float().mean() > 0.2  # the quick classifier's maps are not empty
    # the published maps are stored in float16: equal to within one float16 step
    torch.testing.assert_close(maps[cam["slot_image"], cam["slot_class"]].float(), cam["maps"].float(),
                               atol=2e-4, rtol=2.0 ** -10)


def test_from_scratch_the_store_is_fed_in_evaluation_mode(quick_voc):
    from wsss_lib.util.io import read_json

    run = get_stage("classifier")(quick=True, progress=False, pretrained=False)
    assert read_json(run / "metrics.json")["store_forward_eval"] == 1.0


# --- initialization, presets ---------------------------------------------------------------------------
def test_official_head_initialization_is_normal_001():
    """models/vgg1.py _initialize_weights: every conv of the new layers N(0, 0.01), biases 0."""
    torch.manual_seed(0)
    net = build_cam_net("tiny", 8, None, width=16, head_init="normal")
    w = torch.cat([m.weight.flatten() for m in [*net.head.modules(), net.classifier] if isinstance(m, nn.Conv2d)])
    assert float(w.detach().std()) == pytest.approx(0.01, rel=0.05)
    assert all(float(m.bias.detach().abs().max()) == 0 for m in net.head.modules() if isinstance(m, nn.Conv2d))


def test_official_presets_take_the_official_optimizer():
    plus = get_stage("oaa_plus").config(FULL, preset="official")
    assert (plus.loss, plus.nesterov, plus.weight_decay, plus.head_init, plus.epochs) == \
        ("hl_official", True, 5e-4, "normal", 15)
    cls = get_stage("classifier").config(FULL, preset="official")
    assert (cls.lr, cls.nesterov, cls.weight_decay, cls.head_init) == (1e-3, True, 5e-4, "normal")
    assert get_stage("oaa_plus").config(FULL).epochs == 15  # the paper's and the official code's


# --- OAA+ targets: the official fallback for pairs never accumulated --------------------------------------
def test_empty_targets_take_the_final_cam():
    from wsss_lib.stages.oaa_plus import fill_empty_targets

    base = {"image_ids": ["a", "b"], "slot_image": torch.tensor([0, 1, 1]), "slot_class": torch.tensor([0, 0, 2])}
    acc = {**base, "maps": torch.tensor([[[0.5, 0.0]], [[0.0, 0.0]], [[0.0, 0.2]]])}  # slot 1 empty
    cam = {**base, "maps": torch.tensor([[[0.9, 0.9]], [[0.3, 0.7]], [[0.1, 0.1]]])}
    filled, n = fill_empty_targets(acc, cam)
    assert n == 1
    torch.testing.assert_close(filled["maps"], torch.tensor([[[0.5, 0.0]], [[0.3, 0.7]], [[0.0, 0.2]]]))
    with pytest.raises(ValueError, match="same"):
        fill_empty_targets(acc, {**cam, "slot_class": torch.tensor([0, 1, 2])})


# --- health figures -------------------------------------------------------------------------------------
def test_never_active_units_by_hand():
    from wsss_lib.models.backbones import Backbone

    net = CAMNet(Backbone([nn.Identity()], 1, 1, [1]), 2, head_channels=4, num_head_convs=1)
    net.head[0] = nn.Conv2d(1, 4, 1)
    with torch.no_grad():
        net.head[0].weight[:] = torch.tensor([1.0, -1.0, 0.0, 2.0])[:, None, None, None]
        net.head[0].bias[:] = torch.tensor([0.0, 0.0, -1.0, -10.0])
    x = torch.tensor([[[[1.0, 2.0]]], [[[3.0, 0.5]]]])  # positive inputs up to 3
    # unit 0: x > 0 -> active; unit 1: -x < 0 never; unit 2: -1 never; unit 3: 2x - 10 <= -4 never
    assert never_active_share(net, x) == pytest.approx(3 / 4)


def test_empty_maps_by_hand_and_the_metric_names():
    src = {"maps": torch.tensor([[[0.0, 0.0]], [[0.0, 0.3]], [[-1.0, 0.0]], [[1.0, 1.0]]])}
    assert empty_map_share(src) == pytest.approx(0.5)
    net = _fresh_net()
    m = health_metrics({"": net, "spotlight": net}, torch.randn(2, 3, 16, 16), {"cam": src})
    assert set(m) == {"dead_head_units", "dead_head_units_spotlight", "empty_maps_cam"}


def test_every_training_run_records_its_health(quick_voc):
    from wsss_lib.util.io import read_json

    cls = read_json(get_stage("classifier")(quick=True, progress=False) / "metrics.json")
    assert {"dead_head_units", "empty_maps_cam", "empty_maps_oaa_max", "final_loss"} <= set(cls)
    plus = read_json(get_stage("oaa_plus")(quick=True, progress=False) / "metrics.json")
    assert {"dead_head_units", "empty_maps_oaa_plus", "empty_targets_filled", "final_loss"} <= set(plus)
    amr = read_json(get_stage("amr")(quick=True, progress=False) / "metrics.json")
    assert {"dead_head_units_compensation", "empty_maps_amr_compensation", "empty_maps_amr_spotlight"} <= set(amr)
    assert all(0.0 <= amr[k] <= 1.0 for k in amr if k.startswith(("dead_", "empty_")))


def test_data_parallel_keeps_frozen_batchnorm_frozen():
    """A pretrained backbone's frozen BatchNorm stays frozen under torchrun: only BatchNorm that trains
    its statistics is synchronized across ranks."""
    from wsss_lib.util.distributed import sync_batchnorm

    net = build_cam_net("tiny", 8, None, width=8)
    from wsss_lib.models.backbones import freeze_batchnorm

    freeze_batchnorm(net.backbone)
    net.head.append(nn.BatchNorm2d(32))  # one that trains
    sync_batchnorm(net, torch.device("cpu"))
    kinds = {type(m).__name__ for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    assert kinds == {"FrozenBatchNorm2d", "AllReduceBatchNorm2d"}
