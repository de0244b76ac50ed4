"""Benchmark version 2 (the VOC-faithful miniature) and the regions pretraining task."""

import numpy as np
import pytest
import torch

from wsss_lib.data.geometry import geometry_summary, instance_table
from wsss_lib.data.miniature import BAND_HUE_INDEX, BAND_PATTERNS, SIZE_RANGE, object_sizes
from wsss_lib.data.spec import DEFAULT_SPEC, PART_HUES, PART_PATTERNS, BenchmarkSpec
from wsss_lib.data.drawing import PART2_HUE_INDEX, PART2_PATTERNS
from wsss_lib.data.synthetic import render_image
from wsss_lib.models import pretrain

V2 = BenchmarkSpec(n_train=40, n_val=8, size=64, version="2")


def test_version2_options_leave_version1_digests_alone_and_are_checked():
    assert DEFAULT_SPEC.digest() == "7c7ad83a1880" and "size_median" not in DEFAULT_SPEC.fields()
    assert V2.fields()["size_median"] == 0.47 and V2.digest() != BenchmarkSpec(n_train=40, n_val=8, size=64).digest()
    with pytest.raises(ValueError, match="version must be '1' or '2', got '3'"):
        BenchmarkSpec(version="3")
    with pytest.raises(ValueError, match="parts_per_object and single_part_prob are version 1 options"):
        BenchmarkSpec(version="2", parts_per_object=2)
    with pytest.raises(ValueError, match="hide_prob in \\[0, 1\\), got 0.47, 0.88, 1.0"):
        BenchmarkSpec(version="2", hide_prob=1.0)


def test_every_region_alone_names_the_class():
    for codes in (zip(PART_HUES, PART_PATTERNS), ((PART_HUES[h], p) for h, p in zip(PART2_HUE_INDEX, PART2_PATTERNS)),
                  ((PART_HUES[h], p) for h, p in zip(BAND_HUE_INDEX, BAND_PATTERNS))):
        assert len(set(codes)) == 8


def test_rendering_is_deterministic_and_consistent():
    a, b = render_image(V2, "train", 3), render_image(V2, "train", 3)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert not np.array_equal(a.image, render_image(V2, "train", 4).image)
    for i in range(20):
        r = render_image(V2, "train", i)
        assert ((r.instance > 0) == (r.mask > 0)).all() and (r.part_mask == (r.part_index > 0)).all()
        assert (r.mask[r.part_index > 0] > 0).all()  # regions belong to their object


def test_hidden_regions_leave_at_least_one_unless_something_covers_it():
    spec = BenchmarkSpec(n_train=60, n_val=4, size=64, version="2", hide_prob=0.9, size_median=0.2, size_sigma=0.0)
    t = instance_table(spec, stride=8, receptive_field=155, n_images=60)
    # small objects inside the frame keep a region unless an object in front covers it (occlusion);
    # with hide_prob 0.9 most keep exactly one
    assert (t.regions >= 1).mean() > 0.97 and (t.regions == 1).mean() > 0.6


def test_sizes_follow_the_log_normal_and_its_truncation():
    rng = np.random.default_rng(0)
    sizes = object_sizes(rng, BenchmarkSpec(version="2", size=100), 20000) / 100
    assert np.median(sizes) == pytest.approx(0.47, abs=0.01)
    assert sizes.min() >= SIZE_RANGE[0] and sizes.max() <= SIZE_RANGE[1] and (np.diff(sizes) <= 0).all()
    # the quartiles lie inside the truncation range, so they are the log-normal's: 0.47 exp(-+0.6745 0.88)
    q25, q75 = np.percentile(sizes, [25, 75])
    assert q25 == pytest.approx(0.2596, abs=0.01) and q75 == pytest.approx(0.8510, abs=0.02)
    s = geometry_summary(instance_table(BenchmarkSpec(version="2", size=112, n_train=200), 4, 139, 200))
    assert s["long_side_cells"]["q75"] > 2 * s["long_side_cells"]["q25"]  # spread like VOC's, unlike version 1


def test_regions_source_task_keeps_the_first_digest_and_renders_its_classes():
    assert pretrain.DEFAULT_PRETRAIN.digest() == "6a9b318cd331"  # names the cache and every tiny run's weights
    spec = pretrain.PretrainSpec(size=48, n_train=8, n_heldout=4, task="regions")
    assert spec.digest() != pretrain.PretrainSpec(size=48, n_train=8, n_heldout=4).digest()
    assert len(spec.classes) == 24 and spec.classes == pretrain.REGION_CLASSES
    a, ka = pretrain.render_pretrain_image(spec, "train", 2)
    b, kb = pretrain.render_pretrain_image(spec, "train", 2)
    assert np.array_equal(a, b) and ka == kb and 0 <= ka < 24
    with pytest.raises(ValueError, match="task must be one of shapes, regions, got 'colours'"):
        pretrain.PretrainSpec(task="colours")
    state, info = pretrain.pretrain_tiny(pretrain.PretrainSpec(size=32, n_train=16, n_heldout=8, epochs=1,
                                                               batch_size=8, task="regions"), progress=False)
    assert info["classes"] == list(pretrain.REGION_CLASSES) and info["chance_accuracy"] == pytest.approx(1 / 24)


def test_linear_probe_by_hand_separable_features():
    from wsss_lib.models.pretrain import linear_probe_map

    class Mean(torch.nn.Module):  # features = the mean colour, which names the class here
        def forward(self, x):
            return x

    imgs = torch.zeros(40, 3, 4, 4, dtype=torch.uint8)
    labels = np.zeros((40, 2), bool)
    for i in range(40):
        c = i % 2
        imgs[i, c] = 200
        labels[i, c] = True
    assert linear_probe_map(Mean(), imgs[:20], labels[:20], imgs[20:], labels[20:]) == 1.0
