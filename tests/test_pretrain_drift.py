"""The pretrained embedded backbone, the drift measures, the two-part benchmark variant."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from wsss_lib.models import pretrain
from wsss_lib.data.spec import DEFAULT_SPEC, PART_HUES, PART_PATTERNS, PARTS2_SPEC, BenchmarkSpec
from wsss_lib.data.drawing import PART2_HUE_INDEX, PART2_PATTERNS
from wsss_lib.data.synthetic import generate_benchmark, render_image
from wsss_lib.formulas.drift import (DriftRecorder, coverage, drift_summary, object_fractions, peaks, region_iou,
                            summary_metrics)
from wsss_lib.models.backbones import build_backbone, tiny_backbone
from wsss_lib.engine.data_setup import resolve_data_root

TINY = pretrain.PretrainSpec(n_train=96, n_heldout=32, size=32, epochs=1, batch_size=32)


# -- pretraining ------------------------------------------------------------------------------------
def test_pretraining_is_deterministic():
    s1, i1 = pretrain.pretrain_tiny(TINY, progress=False)
    s2, i2 = pretrain.pretrain_tiny(TINY, progress=False)
    assert i1["weights_sha256"] == i2["weights_sha256"] == pretrain.weights_digest(s2)
    other, _ = pretrain.pretrain_tiny(pretrain.PretrainSpec(**{**TINY.__dict__, "seed": 1}), progress=False)
    assert pretrain.weights_digest(other) != i1["weights_sha256"]  # the digest does tell weights apart


def test_pretraining_cache_is_reused_and_checked(tmp_path, monkeypatch):
    folder = pretrain.ensure_tiny_pretrained(TINY, cache_dir=tmp_path, progress=False)
    assert folder.name == f"tiny-{TINY.digest()}" and (folder / "weights.pt").exists()
    info = json.loads((folder / "pretrain.json").read_text())
    assert 0 <= info["heldout_accuracy"] <= 1 and info["train_seconds"] > 0

    def boom(*a, **k):
        raise AssertionError("the cache was not reused")

    monkeypatch.setattr(pretrain, "pretrain_tiny", boom)
    assert pretrain.ensure_tiny_pretrained(TINY, cache_dir=tmp_path, progress=False) == folder
    # a tampered file is refused, naming it
    monkeypatch.setenv("WSSS_CACHE", str(tmp_path))
    sd = torch.load(folder / "weights.pt", weights_only=True)
    next(iter(sd.values())).add_(1.0)
    torch.save(sd, folder / "weights.pt")
    with pytest.raises(RuntimeError, match="weights.pt does not match"):
        pretrain.load_tiny_pretrained(TINY)


def test_pretrained_features_beat_random_on_heldout_source_images(tmp_path, monkeypatch):
    monkeypatch.setenv("WSSS_CACHE", str(tmp_path))
    from wsss_lib.models.weights import pretrained_backbone, weights_for
    from wsss_lib.runs.profile import QUICK

    from dataclasses import replace

    spec = replace(QUICK.pretrain, n_train=480, epochs=3)  # a small pretraining task of its own, made in the empty cache
    bb = pretrained_backbone("tiny", weights_for("tiny", True, spec))  # the same path every stage takes
    assert (tmp_path / "pretrained" / f"tiny-{spec.digest()}" / "weights.pt").exists()
    images, labels = pretrain.pretrain_split(spec, "heldout")
    torch.manual_seed(0)
    acc_pre = pretrain.probe_accuracy(bb, images, labels)
    acc_rand = pretrain.probe_accuracy(tiny_backbone(), images, labels)
    assert acc_pre > acc_rand + 0.1, (acc_pre, acc_rand)


def test_source_task_is_disjoint_and_deterministic():
    assert len(pretrain.SHAPE_CLASSES) == 24 and not any("ellipse" in c or "disc" in c for c in pretrain.SHAPE_CLASSES)
    a, ka = pretrain.render_pretrain_image(TINY, "train", 3)
    b, kb = pretrain.render_pretrain_image(TINY, "train", 3)
    c, _ = pretrain.render_pretrain_image(TINY, "heldout", 3)
    assert np.array_equal(a, b) and ka == kb and not np.array_equal(a, c)


# -- benchmark variants -----------------------------------------------------------------------------
def test_version1_benchmark_is_unchanged_by_the_variant_option(tmp_path):
    # the digests name the cache folders and enter every run's identity: they must not move
    from wsss_lib.runs.profile import QUICK

    assert DEFAULT_SPEC.digest() == "7c7ad83a1880" and QUICK.benchmark().digest() == "baa332476e74"
    voc = generate_benchmark(tmp_path / "q", QUICK.benchmark(), progress=False)
    meta = json.loads((voc / "benchmark.json").read_text())
    assert meta["files_sha256"] == "1726659bfdbbaf49a80fcd97606098b84053a5cd8c9c8e03c67ffa7756922169"
    assert "parts_per_object" not in meta["spec"]


def test_two_part_variant_parts_name_the_class_and_sometimes_one_is_hidden():
    codes1 = set(zip(PART_HUES, PART_PATTERNS))
    codes2 = {(PART_HUES[h], p) for h, p in zip(PART2_HUE_INDEX, PART2_PATTERNS)}
    assert len(codes1) == 8 and len(codes2) == 8  # either part alone names the class
    spec = PARTS2_SPEC
    assert spec.digest() != DEFAULT_SPEC.digest()
    one = two = 0
    for i in range(150):
        r = render_image(spec, "train", i)
        for c in set(r.objects):
            obj = r.mask == c + 1
            has1, has2 = (r.part_index[obj] == 1).any(), (r.part_index[obj] == 2).any()
            assert has1 or has2
            if has1 and has2:
                two += 1
                y1, x1 = np.argwhere(obj & (r.part_index == 1)).mean(0)
                y2, x2 = np.argwhere(obj & (r.part_index == 2)).mean(0)
                assert np.hypot(y1 - y2, x1 - x2) > 8  # at different places on the body
            else:
                one += 1
    assert 0.15 < one / (one + two) < 0.45  # single_part_prob = 0.3 (objects may overlap)
    with pytest.raises(ValueError, match="parts_per_object"):
        BenchmarkSpec(parts_per_object=3)


def test_unknown_embedded_variant_is_named():
    with pytest.raises(ValueError, match="embedded:nope.*embedded:parts2"):
        resolve_data_root("embedded:nope")


# -- drift ------------------------------------------------------------------------------------------
def test_drift_figures_by_hand():
    # one pair, 2 epochs, 2x2 maps: the peak moves from the top-left to the top-right cell
    maps = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]], [[[0.0, 1.0], [0.0, 0.2]]]])
    seen = torch.ones(2, 1, dtype=torch.bool)
    frac = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])  # the object is the top row
    assert torch.allclose(peaks(maps[:, 0]), torch.tensor([[0.25, 0.25], [0.25, 0.75]]))
    assert region_iou(maps[0], maps[1], 0.5).item() == 0.0
    assert torch.isnan(region_iou(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2), 0.5)).all()
    assert torch.allclose(coverage(maps, frac, 0.5), torch.tensor([[0.5], [0.5]]))
    s = drift_summary(maps, seen, frac, threshold=0.5)
    assert s["peak_shift"] == [None, pytest.approx(0.5)]
    assert s["consecutive_iou"] == [None, 0.0]
    assert s["single_epoch_coverage"] == [0.5, 0.5]
    assert s["discovery"] == [0.5, 1.0]  # MAX of the two epochs covers the whole top row
    m = summary_metrics(s)
    assert m["discovery_final"] == 1.0 and m["discovery_gain"] == 0.5 and m["drift_peak_shift_mean"] == 0.5
    assert all(np.isfinite(v) for v in m.values())


def test_drift_part_switch_by_hand():
    # parts: part 1 = left column, part 2 = right column, no body; the mass moves from part 1 to 2
    maps = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]], [[[0.0, 1.0], [0.0, 1.0]]], [[[0.0, 1.0], [0.0, 0.0]]]])
    pm = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]]])
    s = drift_summary(maps, torch.ones(3, 1, dtype=torch.bool), None, 0.5, pm)
    assert s["mass_part1"] == [1.0, 0.0, 0.0] and s["mass_part2"] == [0.0, 1.0, 1.0]
    assert s["part_switch"] == [None, 1.0, 0.0] and s["pairs_switching_ever"] == 1.0


def test_three_regions_and_where_the_peak_sits_by_hand():
    # 2x2 cells: region 1 top-left, region 2 top-right, region 3 bottom-left (half of it), body the
    # other half of bottom-left; bottom-right is off the object. Peaks: region 1, region 3's cell
    # (a half region, half body cell counts as a region: >= 0.5), then off the object.
    pm = torch.zeros(1, 4, 2, 2)
    pm[0, 0, 0, 0] = pm[0, 1, 0, 1] = 1.0
    pm[0, 2, 1, 0] = pm[0, 3, 1, 0] = 0.5
    maps = torch.zeros(3, 1, 2, 2)
    maps[0, 0, 0, 0] = maps[1, 0, 1, 0] = maps[2, 0, 1, 1] = 1.0
    s = drift_summary(maps, torch.ones(3, 1, dtype=torch.bool), None, 0.5, pm)
    assert s["mass_part1"] == [1.0, 0.0, 0.0] and s["mass_part3"] == [0.0, 0.5, 0.0] and s["mass_body"] == [0.0, 0.5, 0.0]
    assert s["peak_on_region"] == [1.0, 1.0, 0.0] and s["peak_off_object"] == [0.0, 0.0, 1.0]
    assert s["peak_on_body"] == [0.0, 0.0, 0.0]
    # the dominant region goes 1 -> 3; at epoch 3 no attention is on a region (no switch counted)
    assert s["part_switch"] == [None, 1.0, None] and s["pairs_switching_ever"] == 1.0
    pm2 = pm.clone()
    pm2[0, 2, 1, 0], pm2[0, 3, 1, 0] = 0.4, 0.6  # mostly body: the second peak sits on the body
    s2 = drift_summary(maps, torch.ones(3, 1, dtype=torch.bool), None, 0.5, pm2)
    assert s2["peak_on_body"] == [0.0, 1.0, 0.0] and s2["peak_on_region"] == [1.0, 0.0, 0.0]
    m = summary_metrics(s)
    assert m["peak_on_region_e01"] == 1.0 and m["cam_mass_part3_e02"] == 0.5
    empty = drift_summary(torch.zeros(1, 1, 2, 2), torch.ones(1, 1, dtype=torch.bool), None, 0.5, pm)
    assert empty["peak_on_region"] == [None]  # no map with a peak: undefined, not 0%


def test_drift_recorder_and_object_fractions():
    slot_of = torch.tensor([[0, -1], [1, 2]])  # image 0: class 0; image 1: classes 0 and 1
    rec = DriftRecorder(slot_of, epochs=2, size=(2, 2))
    att = torch.arange(16.0).view(2, 2, 2, 2) / 16
    rec.record(1, torch.tensor([1, 0]), att, None)
    assert rec.seen[1].tolist() == [True, True, True] and not rec.seen[0].any()
    assert torch.allclose(rec.maps[1, 0].float(), att[1, 0], atol=1e-3)  # image 0, class 0 came second
    assert torch.allclose(rec.maps[1, 2].float(), att[0, 1], atol=1e-3)
    mask = np.array([[1, 1, 0, 0]] * 4, dtype=np.uint8)
    f = object_fractions([mask], np.array([0]), (2, 2))
    assert torch.allclose(f, torch.tensor([[[1.0, 0.0], [1.0, 0.0]]]))


def test_classifier_run_writes_drift(tmp_path, monkeypatch):
    from wsss_lib.stages import get_stage

    run = get_stage("classifier")(quick=True, run_dir=str(tmp_path / "run"), data_root="embedded:parts2",
                                  progress=False, epochs=3)
    m = json.loads((run / "metrics.json").read_text())
    d = json.loads((run / "drift.json").read_text())
    assert d["epochs"] == 3 and d["pairs"] > 0 and len(d["discovery"]) == 3
    assert all(b >= a - 1e-9 for a, b in zip(d["discovery"], d["discovery"][1:]))  # MAX only grows
    assert {"discovery_e03", "cam_mass_part2_e03", "drift_epochs"} <= set(m)
    params = json.loads((run / "params.json").read_text())["params"]
    from wsss_lib.runs.profile import QUICK

    assert params["pretrained"] is True and params["profile"] == "quick"
    assert params["weights"] == [{"backbone": "tiny", "origin": "pretraining-task", "spec": QUICK.pretrain.digest(),
                                  "sha256": json.loads((pretrain.pretrained_dir(QUICK.pretrain) / "pretrain.json")
                                                       .read_text())["weights_sha256"]}]


def test_consecutive_region_iou_is_the_per_pair_region_iou_averaged():
    import numpy as np
    import torch

    from wsss_lib.formulas.drift import consecutive_region_iou

    g = torch.Generator().manual_seed(0)
    maps = torch.rand(4, 3, 2, 5, 5, generator=g)
    maps[1, 0, 0] = 0  # an empty region at epoch 2 for one pair
    maps[:, 2, 1] = 0  # a pair empty at every epoch: left out
    labels = np.array([[1, 0], [1, 1], [0, 1]])
    snaps = {"maps": maps, "indices": [0, 1, 2]}

    def by_hand(e):  # the loop the figure code used to run
        ious = []
        for j, i in enumerate(snaps["indices"]):
            for c in np.flatnonzero(labels[i]):
                a, b = maps[e, j, c].numpy() > 0.5, maps[e + 1, j, c].numpy() > 0.5
                if (a | b).sum():
                    ious.append((a & b).sum() / (a | b).sum())
        return np.mean(ious)

    np.testing.assert_allclose(consecutive_region_iou(snaps, labels, 0.5), [by_hand(e) for e in range(3)], rtol=1e-6)
