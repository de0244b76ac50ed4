"""Saliency, the pseudo-label and segmentation stages, the data fraction, dense CRF."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from wsss_lib.data.synthetic import ensure_benchmark, render_image
from wsss_lib.runs.profile import QUICK

QUICK_SPEC = QUICK.benchmark()
from wsss_lib.data.transforms import ViewGeometry
from wsss_lib.data.voc import VOCLayout
from wsss_lib.util.io import read_json
from wsss_lib.formulas.label_rules import explain_cues, read_label_png, threshold_labels
from wsss_lib.data.saliency import (SaliencySpec, ensure_saliency, load_saliency, render_saliency,
                               saliency_quality)
from wsss_lib.stages import get_stage, stage_of_notebook
from wsss_lib.stages.pseudo_labels import LABEL_FOLDER, stage_of_source
from wsss_lib.stages.segmentation import PseudoLabelSet, fraction_subset, segmentation_loss


@pytest.fixture(scope="module")
def quick_root():
    return ensure_benchmark(QUICK_SPEC, progress=False)


# -- saliency ---------------------------------------------------------------------------------------
def test_saliency_is_deterministic_and_follows_its_imperfection_model():
    a = render_saliency(QUICK_SPEC, "train", 3)
    b = render_saliency(QUICK_SPEC, "train", 3)
    assert np.array_equal(a, b) and a.min() >= 0 and a.max() <= 1
    r = render_image(QUICK_SPEC, "train", 3)
    obj = r.mask > 0
    perfect = SaliencySpec(miss_prob=0, partial_prob=0, clutter_prob=0, context_prob=0, blur=0, noise=0,
                           object_level=(1.0, 1.0))
    s = render_saliency(QUICK_SPEC, "train", 3, perfect)
    assert np.array_equal(s > 0.5, obj)  # no imperfection: exactly the objects
    missed = render_saliency(QUICK_SPEC, "train", 3, SaliencySpec(miss_prob=1.0, blur=0, noise=0, clutter_prob=0,
                                                                   context_prob=0))
    assert missed[obj].max() <= 0.15  # every object missed


def test_saliency_quality_on_hand_made_maps(tmp_path, quick_root):
    layout = VOCLayout(quick_root, "val")
    for i, iid in enumerate(layout.ids):  # the ground truth itself: MAE 0, max F 1
        fg = (layout.load_mask(i) > 0).astype(np.uint8) * 255
        Image.fromarray(fg, mode="L").save(tmp_path / f"{iid}.png")
    q = saliency_quality(tmp_path, layout)
    assert q["mae"] == pytest.approx(0.0) and q["max_f_measure"] == pytest.approx(1.0)
    for i, iid in enumerate(layout.ids):  # everything salient: precision = fg share, recall 1
        Image.fromarray(np.full(layout.load_mask(i).shape, 255, np.uint8), mode="L").save(tmp_path / f"{iid}.png")
    q = saliency_quality(tmp_path, layout)
    fg_share = np.mean([(layout.load_mask(i) > 0).mean() for i in range(len(layout))])
    assert q["mae"] == pytest.approx(1 - fg_share, abs=1e-6)
    assert q["recall_at_best"] == pytest.approx(1.0)


def test_generated_saliency_folder_is_imperfect_but_informative(quick_root):
    folder = ensure_saliency(quick_root, progress=False)
    assert ensure_saliency(quick_root, progress=False) == folder  # cached
    q = saliency_quality(folder, VOCLayout(quick_root, "train"))
    assert 0.02 < q["mae"] < 0.3
    assert 0.6 < q["max_f_measure"] < 0.99


def test_saliency_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="t000001.png"):
        load_saliency(tmp_path, "t000001", (8, 8))
    Image.fromarray(np.zeros((4, 6), np.uint8), mode="L").save(tmp_path / "t000001.png")
    with pytest.raises(ValueError, match=r"t000001.png is 6x4 but its image is 8x8"):
        load_saliency(tmp_path, "t000001", (8, 8))
    with pytest.raises(FileNotFoundError, match="not the embedded benchmark"):
        ensure_saliency(tmp_path)


# -- cues, fraction, label views, loss -------------------------------------------------------------
def test_explain_cues_marks_the_conflict_of_a_salient_unattended_pixel():
    att = np.array([[[0.0, 0.2, 1.0]]], np.float32)  # one class, 1 x 3 pixels
    sal = np.array([[0.0, 0.9, 0.95]], np.float32)
    c = explain_cues(att, [2], sal)
    # pixel 0: background (bg score 1); pixel 1: salient but attention 0.2 < 0.3: bg score 0.1 dropped,
    # so label 0 on a salient pixel -> ignore (conflict); pixel 2: class 3
    assert c["labels"].tolist() == [[0, 255, 3]]
    assert c["object"].tolist() == [[0, 0, 3]] and c["background"].tolist() == [[True, False, False]]
    assert c["conflict"].tolist() == [[False, False, False]]  # pixel 1: neither cue answered


def test_fraction_subsets_are_deterministic_and_nested():
    n = 1000
    subs = {f: fraction_subset(n, f, seed=3) for f in (0.2, 0.5, 0.8, 1.0)}
    assert [len(s) for s in subs.values()] == [200, 500, 800, 1000]
    assert set(subs[0.2]) <= set(subs[0.5]) <= set(subs[0.8]) <= set(subs[1.0])
    assert fraction_subset(n, 0.2, seed=3) == subs[0.2]
    assert fraction_subset(n, 0.2, seed=4) != subs[0.2]
    with pytest.raises(ValueError, match="fraction=0"):
        fraction_subset(n, 0, seed=0)


def test_pseudo_label_views_follow_the_geometry(tmp_path):
    from wsss_lib.formulas.label_rules import write_label_png

    class L:  # a minimal layout: two ids
        ids = ["a", "b"]

    lab = np.array([[0, 1, 2, 3]] * 4, np.uint8)
    for iid in L.ids:
        write_label_png(tmp_path / f"{iid}.png", lab)
    ls = PseudoLabelSet(tmp_path, L, [0, 1])
    geo = torch.stack([ViewGeometry().as_tensor(), ViewGeometry(flip=True).as_tensor()])
    v = ls.views(torch.tensor([0, 1]), geo, 4)
    assert v[0].tolist() == lab.tolist()
    assert v[1].tolist() == lab[:, ::-1].tolist()
    out = ls.views(torch.tensor([0]), ViewGeometry(hw=2.0, hh=2.0).as_tensor()[None], 4)  # zoom out: padding
    assert out[0, 0, 0] == 255 and out[0, 1, 1] != 255


def test_pseudo_labels_are_kept_as_uint8_and_ignore_stays_ignore(tmp_path):
    """One byte a label pixel (VOC train_aug: 2 GB, not 16 GB as int64); a 255 (ignored) pixel renders as 255."""
    from wsss_lib.formulas.label_rules import write_label_png

    class L:
        ids = ["a"]

    lab = np.array([[0, 255, 2, 3]] * 4, np.uint8)
    write_label_png(tmp_path / "a.png", lab)
    ls = PseudoLabelSet(tmp_path, L, [0])
    assert ls.maps[0].dtype == torch.uint8
    v = ls.views(torch.tensor([0]), ViewGeometry().as_tensor()[None], 4)
    assert v.dtype == torch.int64 and v[0].tolist() == lab.tolist()


def test_segmentation_loss_by_hand():
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 5.0]]]])  # 1 x 2 classes x 1 x 2
    target = torch.tensor([[[0, 255]]])
    expected = -np.log(np.exp(2) / (np.exp(2) + 1))  # only pixel 0 counts
    assert float(segmentation_loss(logits, target)) == pytest.approx(expected, rel=1e-5)
    assert float(segmentation_loss(logits, torch.full((1, 1, 2), 255))) == 0.0


def test_dense_crf_sharpens_a_blurred_mask():
    from scipy import ndimage

    from wsss_lib.formulas.crf import dense_crf

    s = 48
    yy, xx = np.mgrid[0:s, 0:s]
    true = (abs(yy - 24) <= 10) & (abs(xx - 24) <= 10)
    img = np.zeros((s, s, 3), np.uint8) + 40
    img[true] = (220, 60, 60)
    soft = np.clip(ndimage.gaussian_filter(ndimage.binary_dilation(true, iterations=4).astype(float), 4), 0.02, 0.98)
    probs = np.stack([1 - soft, soft]).astype(np.float32)

    def iou(a):
        return (a & true).sum() / (a | true).sum()

    before, after = iou(probs.argmax(0) == 1), iou(dense_crf(img, probs).argmax(0) == 1)
    assert before < 0.7 and after > 0.95


# -- the stages ------------------------------------------------------------------------------------
def test_stage_registry_knows_sources_and_notebook_05():
    assert stage_of_source("oaa_plus") == "oaa_plus" and stage_of_source("amr_xi0.5") == "amr"
    assert stage_of_source("cam") == "classifier"
    with pytest.raises(ValueError, match="source='nope'"):
        stage_of_source("nope")
    assert stage_of_notebook("05_pseudo_labels_segmentation.ipynb").name == "segmentation"


def test_pseudo_label_stage_writes_scored_palette_labels(tmp_path, quick_root):
    from wsss_lib.runs.attention_io import load_attention
    import torch.nn.functional as Fn

    run = get_stage("pseudo_labels")(quick=True, run_dir=str(tmp_path / "p"), mode="threshold", source="cam",
                                     threshold=0.1, progress=False)
    layout = VOCLayout(quick_root, "train")
    pngs = sorted((run / LABEL_FOLDER).glob("*.png"))
    assert [p.stem for p in pngs] == sorted(layout.ids)
    m = read_json(run / "metrics.json")
    assert 0 <= m["pseudo_miou"] <= 1 and m["pseudo_ignored"] == 0.0  # threshold mode never ignores
    # image 5's label is threshold_labels of its present classes' maps, resized to the image
    from wsss_lib.runs.folders import upstream_run

    src = load_attention(upstream_run(run, "attention_run") / "attention" / "cam.pt")
    slots = (src["slot_image"] == 5).nonzero().flatten()
    att = Fn.interpolate(src["maps"][slots][None], size=layout.load_mask(5).shape, mode="bilinear",
                         align_corners=False)[0].numpy()
    expected = threshold_labels(att, src["slot_class"][slots].numpy(), 0.1)
    assert np.array_equal(read_label_png(run / LABEL_FOLDER / f"{layout.ids[5]}.png"), expected)


def test_pseudo_label_stage_errors_name_what_is_wrong(tmp_path, quick_root):
    stage = get_stage("pseudo_labels")
    with pytest.raises(FileNotFoundError, match="saliency_root='/no/such/sal'"):
        stage(quick=True, run_dir=str(tmp_path / "a"), saliency_root="/no/such/sal", source="cam", progress=False)
    bad = tmp_path / "badsal"
    bad.mkdir()
    for iid in VOCLayout(quick_root, "train").ids:
        Image.fromarray(np.zeros((10, 12), np.uint8), mode="L").save(bad / f"{iid}.png")
    with pytest.raises(ValueError, match=r"badsal/t000000.png is 12x10 but its image is 64x64"):
        stage(quick=True, run_dir=str(tmp_path / "b"), saliency_root=str(bad), source="cam", progress=False)
    evo = get_stage("evolution")(quick=True, progress=False)  # a finished run of another stage
    with pytest.raises(ValueError, match="is a run of stage 'evolution', not of stage 'classifier'"):
        stage(quick=True, run_dir=str(tmp_path / "c"), attention_run=str(evo), source="cam", progress=False)
    with pytest.raises(FileNotFoundError, match="attention_run='/no/run'"):
        stage(quick=True, run_dir=str(tmp_path / "d"), attention_run="/no/run", source="cam", progress=False)
    with pytest.raises(ValueError, match="parameter mode='both' is invalid"):
        stage(quick=True, mode="both", progress=False)


def test_segmentation_smoke_run_lowers_its_loss_and_scores_val(tmp_path, quick_root):
    seg = get_stage("segmentation")
    run = seg(quick=True, run_dir=str(tmp_path / "s"), epochs=5, lr=0.02, progress=False,
              pseudo_params={"source": "cam", "mode": "threshold", "threshold": 0.1})
    m = read_json(run / "metrics.json")
    assert m["final_loss"] < 0.8 * m["first_epoch_loss"]
    assert 0 <= m["seg_miou"] <= 1 and "pseudo_miou" in m
    ev = read_json(run / "evaluation.json")
    val = VOCLayout(quick_root, "val")
    assert np.asarray(ev["confusion"]).sum() == sum((val.load_mask(i) != 255).sum() for i in range(len(val)))
    assert (run / "confusion.png").exists() and len(list((run / "SegmentationClassPred").glob("*.png"))) == len(val)
    # a fraction run: fewer images, the same number of steps
    half = seg(quick=True, run_dir=str(tmp_path / "h"), epochs=5, lr=0.02, fraction=0.5, progress=False,
               pseudo_params={"source": "cam", "mode": "threshold", "threshold": 0.1})
    mh = read_json(half / "metrics.json")
    assert mh["train_images"] == 24 and mh["train_steps"] == m["train_steps"]


def test_voc_segmentation_networks_build_and_predict_at_the_image_size():
    from wsss_lib.models.segnet import build_segnet
    from wsss_lib.stages.segmentation import predict_probs

    x = torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8)
    for name in ("deeplab_largefov", "deeplabv3_resnet101"):
        net = build_segnet(name, 21).eval()
        groups = net.param_groups(0.001, 5e-4)
        assert [g["lr"] for g in groups] == [0.001, 0.01]  # new layers at 10x
        assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))
        p = predict_probs(net, x, scales=(0.75, 1.0), flip=True)
        assert p.shape == (2, 21, 64, 64) and torch.allclose(p.sum(1), torch.ones(2, 64, 64), atol=1e-4)


def test_flip_inference_of_a_flip_equivariant_net_changes_nothing():
    from wsss_lib.stages.segmentation import predict_probs

    net = torch.nn.Conv2d(3, 4, 1).eval()  # per-pixel: mirroring commutes with it
    x = torch.randint(0, 255, (1, 3, 16, 16), dtype=torch.uint8)
    assert torch.allclose(predict_probs(net, x, flip=True), predict_probs(net, x), atol=1e-6)


def test_pseudo_labels_made_in_loader_workers_equal_those_made_in_the_main_process(tmp_path, quick_root):
    """The labels are one independent job per image (``LabelJobs``): made by two loader workers they
    are the same files and the same scores, and the worker count is not part of the run's identity."""
    stage = get_stage("pseudo_labels")
    kw = dict(quick=True, mode="saliency", source="cam", progress=False)
    one = stage(run_dir=str(tmp_path / "w0"), **kw)
    two = stage(run_dir=str(tmp_path / "w2"), num_workers=2, **kw)
    files = sorted(p.name for p in (one / LABEL_FOLDER).glob("*.png"))
    assert files and files == sorted(p.name for p in (two / LABEL_FOLDER).glob("*.png"))
    for name in files:
        assert np.array_equal(np.asarray(Image.open(one / LABEL_FOLDER / name)), np.asarray(Image.open(two / LABEL_FOLDER / name)))
    m1, m2 = read_json(one / "metrics.json"), read_json(two / "metrics.json")
    assert {k: v for k, v in m1.items() if "seconds" not in k and "bytes" not in k} == \
        {k: v for k, v in m2.items() if "seconds" not in k and "bytes" not in k}
    assert read_json(one / "params.json")["params"] == read_json(two / "params.json")["params"]
