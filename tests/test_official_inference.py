"""AMR's official inference (JayQine/AMR ``step/make_cam.py`` + ``step/gradCAM.py`` +
``misc/torchutils.py``), restated here from reading it: the per-image, per-scale, per-class loop of
adversarial climbing with Grad-CAM hooks, run on one image-and-mirror pair at a time with the AMM's
BatchNorm in training mode (the official network's ``train()`` override leaves it so under
``model.eval()``). ``wsss_lib.engine.adversarial_cam.official_cams`` batches the same work across
images, classes and scales; both run on random weights and random images and must give equal maps.
They run in float64: the official maps are not continuous in the input (the Grad-CAM weight counts
positive gradient entries, the climbing mask thresholds the map), so in float32 a rounding
difference between one pair per forward and many can move a pixel across a threshold."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wsss_lib.engine.adversarial_cam import ClimbSettings, autocast_agreement, normalize_uint8, official_cams, rescale_uint8
from wsss_lib.models.amm import AMM_FORMS
from wsss_lib.models.amr import build_amr


class _RestatedGradCAM:
    """gradCAM.py: forward keeps the class maps and their summed ReLU scores; backward(c) backpropagates
    the class's summed score; generate(layer) = ReLU(sum_ch fmap * (sum of the gradient / number of
    positive gradient entries of the whole tensor))."""

    def __init__(self, net):
        self.net, self.fmaps, self.grads = net, {}, {}
        for name in ("spotlight", "compensation"):
            getattr(net, name).head.register_forward_hook(self._keep(name))

    def _keep(self, name):
        def hook(module, inputs, output):
            self.fmaps[name] = output
            output.register_hook(lambda g: self.grads.__setitem__(name, g))
        return hook

    def forward(self, image, step):
        self.logits = (self.net.spotlight if step == 1 else self.net.compensation)(image)
        self.logits_vec = F.relu(self.logits).flatten(2).sum(-1)
        return self.logits

    def backward(self, c):
        self.net.zero_grad()
        self.logits_vec[:, c].sum().backward(retain_graph=True)

    def generate(self, name):
        fmaps, grads = self.fmaps[name], self.grads[name]
        weights = grads.flatten(2).sum(-1) / (torch.sum(grads > 0) + 1e-12)
        return F.relu((fmaps * weights[:, :, None, None]).sum(1, keepdim=True))


def _restated_make_cam(net, pack, classes, size, args, order):
    """make_cam.py's _work for one image: ``pack`` = per scale a 2 x 3 x h x w tensor (image, mirror)."""
    gcam = _RestatedGradCAM(net)
    result = {}
    for step, name in ((1, "spotlight"), (2, "compensation")):
        outputs_cam = []
        mul_for_scale = None
        for size_idx in order:
            cam_all_classes = None
            for c_idx, c in enumerate(classes):
                img_single = pack[size_idx].clone().detach()
                if size_idx != 1:
                    total_adv_iter = args["adv_iter"]
                elif args["adv_iter"] > 10:
                    total_adv_iter, mul_for_scale = args["adv_iter"] // 2, 2
                elif args["adv_iter"] < 6:
                    total_adv_iter, mul_for_scale = args["adv_iter"], 1
                else:
                    total_adv_iter = 5
                    mul_for_scale = float(total_adv_iter) / 5
                for it in range(total_adv_iter):
                    img_single.requires_grad = True
                    outputs = gcam.forward(img_single, step)
                    if c_idx == 0 and it == 0:
                        cam_all_classes = torch.zeros(len(classes), outputs.shape[2], outputs.shape[3])
                    gcam.backward(c)
                    regions = gcam.generate(name)
                    regions = regions[0] + regions[1].flip(-1)
                    if it == 0:
                        init_cam = regions.detach()
                    cam_all_classes[c_idx] += regions[0].data * mul_for_scale
                    logit = F.relu(outputs).flatten(2).mean(-1)
                    logit_loss = -2 * logit[:, c].sum() + torch.sum(logit)
                    expanded_mask = torch.zeros(regions.shape)
                    expanded_mask[regions / regions.max() > args["score_th"]] = 1
                    l_ad = torch.sum(torch.abs(regions - init_cam) * expanded_mask)
                    loss = -logit_loss - l_ad * args["AD_coeff"]
                    net.zero_grad()
                    img_single.grad.zero_()
                    loss.backward()
                    grad = img_single.grad.data
                    perturbed = img_single + args["AD_stepsize"] * grad / (torch.max(torch.abs(grad)) + 1e-12)
                    img_single = torch.clamp(perturbed, img_single.min().item(), img_single.max().item()).detach()
            outputs_cam.append(cam_all_classes)
        strided_size = ((size[0] - 1) // 4 + 1, (size[1] - 1) // 4 + 1)
        up = (((size[0] - 1) // 16 + 1) * 16, ((size[1] - 1) // 16 + 1) * 16)
        strided = torch.sum(torch.stack([F.interpolate(o[None], strided_size, mode="bilinear",
                                                       align_corners=False)[0] for o in outputs_cam]), 0)
        high = [F.interpolate(o[:, None], up, mode="bilinear", align_corners=False) for o in outputs_cam]
        high = torch.sum(torch.stack(high, 0), 0)[:, 0, :size[0], :size[1]]
        strided /= F.adaptive_max_pool2d(strided, (1, 1)) + 1e-5
        high /= F.adaptive_max_pool2d(high, (1, 1)) + 1e-5
        result[name] = {"high_res": high, "strided": strided}
    return result


def _amr(form, seed=0):
    torch.manual_seed(seed)
    net = build_amr("tiny", 4, None, form=form, width=8).eval()  # narrow: the same algorithm, seconds
    for m in net.modules():  # random BatchNorm statistics, so eval-mode BN is not the identity
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.8, 1.2)
    return net


def _images(n, h, w, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.random((h, w, 3)) * 255).astype(np.uint8) for _ in range(n)]


@pytest.mark.parametrize("form", sorted(AMM_FORMS))
@pytest.mark.parametrize("adv_iter,scales", [(3, (1.0, 0.5, 0.75, 1.25, 1.5, 1.75, 2.0)), (12, (1.0, 0.5, 1.5))])
def test_batched_official_inference_equals_the_official_loop(form, adv_iter, scales):
    net = _amr(form)
    images = _images(3, 29, 33)  # odd sizes: every scale's rounding is exercised
    classes = [[0, 2], [3], [1, 2, 3]]
    s = ClimbSettings(adv_iter=adv_iter, scales=scales)
    net = net.double()
    ours = official_cams(net, images, classes, s, max_pairs=4, dtype=torch.float64)  # 6 pairs per scale: two chunks
    ref_net = copy.deepcopy(net)
    for m in ref_net.modules():  # the official model is never really put in eval mode: its AMM BN runs in training mode
        if hasattr(m, "spatial") and getattr(m.spatial, "bn", None) is not None:
            m.spatial.bn.train()
    order = [1, 2, 0] + list(range(3, len(scales)))
    args = {"adv_iter": adv_iter, "AD_coeff": 7, "AD_stepsize": 0.08, "score_th": 0.5}
    for img, cls, got in zip(images, classes, ours):
        pack = []
        for sc in scales:
            t = normalize_uint8(rescale_uint8(img, sc))
            pack.append(torch.stack([t, t.flip(-1)]).double())
        ref = _restated_make_cam(ref_net, pack, cls, img.shape[:2], args, order)
        for branch in ("spotlight", "compensation"):
            for key in ("high_res", "strided"):
                r, g = ref[branch][key], got[branch][key]
                assert r.shape == g.shape and r.max() > 0.5
                torch.testing.assert_close(g, r.to(g.dtype), rtol=1e-5, atol=1e-5 * float(r.abs().max()))


@pytest.mark.parametrize("form", sorted(AMM_FORMS))
def test_no_image_depends_on_the_others_in_its_batch(form):
    net = _amr(form, seed=1).double()  # float64: see the module docstring
    images = _images(4, 32, 32, seed=1)
    classes = [[0], [1, 2], [0, 3], [2]]
    s = ClimbSettings(adv_iter=2, scales=(1.0, 0.5))
    together = official_cams(net, images, classes, s, max_pairs=16, dtype=torch.float64)
    for i in range(len(images)):
        alone = official_cams(net, [images[i]], [classes[i]], s, dtype=torch.float64)[0]
        for branch in ("spotlight", "compensation"):
            torch.testing.assert_close(together[i][branch]["high_res"], alone[branch]["high_res"],
                                       rtol=1e-9, atol=1e-10)


def test_schedule_is_the_official_order_and_factors():
    assert ClimbSettings(adv_iter=27).schedule() == [(1, 13, 2.0), (2, 27, 2.0), (0, 27, 2.0), (3, 27, 2.0),
                                                     (4, 27, 2.0), (5, 27, 2.0), (6, 27, 2.0)]
    assert ClimbSettings(adv_iter=8, scales=(1.0, 0.5, 1.5)).schedule() == [(1, 5, 1.0), (2, 8, 1.0), (0, 8, 1.0)]
    assert ClimbSettings(adv_iter=3, scales=(1.0,)).schedule() == [(0, 3, 1.0)]


def test_amr_stage_scores_the_official_inference_of_a_trained_run(tmp_path, quick_voc):
    import json

    from wsss_lib.runs.attention_io import load_attention
    from wsss_lib.stages import get_stage

    amr = get_stage("amr")
    trained = amr(quick=True, progress=False)  # in the runs root, where an upstream is looked up by identity
    run = amr(quick=True, run_dir=str(tmp_path / "amr-official"), progress=False, inference="official",
              adv_iter=1, cam_scales=[1.0, 0.5], score_images=6, trained_run=str(trained))
    info = json.loads((run / "params.json").read_text())
    params = info["params"]
    assert params["inference"] == "official" and params["cam_scales"] == [1.0, 0.5]
    assert not (run / "checkpoint.pt").exists()  # nothing trained: the trained run's network is read
    crop = params["crop_size"] or 64
    for name in ("amr_spotlight", "amr_compensation", "amr_xi0.5"):
        src = load_attention(run / "attention" / f"{name}.pt")
        assert len(src["image_ids"]) == 6  # the first 6 training images
        assert src["maps"].shape[-2:] == ((crop - 1) // 4 + 1,) * 2  # the official stride-4 maps, not stride 8
    # not given, the trained run is found by its parameters (the same training), not trained again
    again = amr(quick=True, run_dir=str(tmp_path / "amr-plain-6"), progress=False, score_images=6)
    assert json.loads((again / "params.json").read_text())["paths"]["trained_run"] == str(trained)


@pytest.mark.parametrize("bad", [{"inference": "advcam"}, {"adv_iter": 0}, {"cam_scales": []},
                                 {"cam_scales": [1.0, -0.5]}, {"score_th": 1.5}])
def test_official_inference_settings_are_checked(bad):
    from wsss_lib.stages.amr import AMRConfig

    with pytest.raises(ValueError, match=next(iter(bad))):
        AMRConfig.from_params(**bad)


def test_chunks_are_sized_by_a_pixel_budget_per_scale(monkeypatch):
    """A large scale of a large image takes fewer pairs per forward (at scale 2.0 a fixed pair count
    runs out of memory on VOC images); the maps do not depend on the chunking."""
    import wsss_lib.engine.adversarial_cam as A

    net = _amr("official", seed=2).double()
    images = _images(5, 20, 30, seed=2)
    classes = [[0], [1], [2], [3], [0]]
    s = ClimbSettings(adv_iter=2, scales=(1.0, 0.5, 2.0))
    real, calls = A.climb_grad_cam, []

    def spy(branch, pairs, *args):
        calls.append(tuple(pairs.shape))
        return real(branch, pairs, *args)

    monkeypatch.setattr(A, "climb_grad_cam", spy)
    budget = 2 * 40 * 60 * 2  # two pairs of the scale-2.0 image (40 x 60 px, image and mirror)
    chunked = official_cams(net, images, classes, s, max_pairs=8, max_pixels=budget, dtype=torch.float64)
    per_size = {}
    for shape in calls:
        per_size.setdefault(shape[-2:], []).append(shape[0])
    assert max(per_size[(40, 60)]) == 2 and sum(per_size[(40, 60)]) == 5 * 2  # 2 branches x 5 pairs, 2 at a time
    assert per_size[(20, 30)] == [5, 5] and per_size[(10, 15)] == [5, 5]  # the budget holds all 5 pairs there
    assert A.pairs_per_chunk((20, 30), 2.0, 8, budget) == 2 and A.pairs_per_chunk((20, 30), 2.0, 8, 10) == 1
    monkeypatch.setattr(A, "climb_grad_cam", real)
    one_go = official_cams(net, images, classes, s, max_pairs=8, dtype=torch.float64)
    for a, b in zip(chunked, one_go):
        torch.testing.assert_close(a["compensation"]["high_res"], b["compensation"]["high_res"], rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("form", sorted(AMM_FORMS))
def test_bf16_autocast_runs_the_network_in_bf16_and_agrees_with_float64(form):
    """make_cam under bf16 autocast (the GPU path; CPU autocast here): the network's forward runs in
    bf16, the climb in float32, and on random weights and images its maps agree with float64 ones to
    a mean absolute difference under 0.02 and labels (threshold 0.3) on more than 98% of the pixels
    (measured when written: 0.0015-0.0044 and 99.7-99.9%)."""
    net = _amr(form)
    images = _images(4, 40, 48)
    classes = [[0, 2], [3], [1, 2, 3], [1]]
    s = ClimbSettings(adv_iter=4, scales=(1.0, 0.5, 1.5))
    seen = []
    hook = net.spotlight.classifier.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    official_cams(net, images[:1], classes[:1], s, autocast=torch.bfloat16)
    hook.remove()
    assert seen and set(seen) == {torch.bfloat16}
    check = autocast_agreement(net, images, classes, s, "cpu", torch.bfloat16)
    assert check["images"] == 4 and check["dtype"] == "bfloat16"
    for branch in ("spotlight", "compensation"):
        assert 0 < check[branch]["mean_abs_diff"] < 0.02 and check[branch]["label_agreement"] > 0.98, check
    exact = autocast_agreement(net, images[:2], classes[:2], s, "cpu", None)  # no autocast: float32 vs float64
    assert exact["compensation"]["mean_abs_diff"] < 1e-3 * check["compensation"]["mean_abs_diff"] + 1e-5


def test_amr_stage_records_the_autocast_agreement(tmp_path, quick_voc, monkeypatch):
    """Where make_cam runs under autocast (a GPU), the run's metrics say how far from float64 its maps are."""
    import json

    from wsss_lib.stages import amr as amr_module
    from wsss_lib.stages import get_stage

    assert amr_module.make_cam_autocast(torch.device("cpu"), True) is None  # the CPU default: float32 as before
    monkeypatch.setattr(amr_module, "make_cam_autocast", lambda device, amp: torch.bfloat16 if amp else None)
    amr = get_stage("amr")
    trained = amr(quick=True, progress=False)
    run = amr(quick=True, run_dir=str(tmp_path / "amr-official-bf16"), progress=False, inference="official",
              adv_iter=1, cam_scales=[1.0], score_images=4, trained_run=str(trained))
    m = json.loads((run / "metrics.json").read_text())
    for branch in ("spotlight", "compensation"):
        assert 0 <= m[f"make_cam_bfloat16_{branch}_mean_abs_diff"] < 0.05
        assert m[f"make_cam_bfloat16_{branch}_label_agreement"] > 0.9


def test_each_image_is_read_and_resized_once_per_scale_and_branch_and_normalized_as_the_official(monkeypatch):
    """An image's classes share its resized copy (the old loop read and resized it once per class),
    which goes to the device as uint8 and is normalized there, with values identical to the official
    float64-then-float32 normalization."""
    from wsss_lib.engine import adversarial_cam as ac

    images = _images(3, 29, 33)
    torch.testing.assert_close(ac.normalize_batch(torch.from_numpy(np.stack(images))),
                               torch.stack([normalize_uint8(im) for im in images]), rtol=0, atol=0)
    calls = []
    real = ac.rescale_uint8
    monkeypatch.setattr(ac, "rescale_uint8", lambda im, sc: calls.append(sc) or real(im, sc))
    classes = [[0, 1, 2], [3], [1, 3]]
    s = ClimbSettings(adv_iter=1, scales=(1.0, 0.5))
    official_cams(_amr("official"), images, classes, s)
    assert len(calls) == len(images) * len(s.scales) * 2  # 3 images x 2 scales x 2 branches (not x 6 classes)
