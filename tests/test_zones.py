"""The zone analysis: where the pixels one attention source adds over another land."""

import numpy as np
import pytest
import torch

from wsss_lib.formulas.zones import ZONES, added_zone_counts, zone_analysis, zone_map, zone_shares


def test_zones_and_added_pixels_by_hand():
    # one row of 7 pixels: band | region | body | band | context (2 px away) | background | other object
    mask = np.array([[0, 1, 1, 0, 0, 0, 2]])
    part = np.array([[0, 1, 0, 0, 0, 0, 0]])
    ctx = np.array([[0, 0, 0, 0, 1, 0, 1]], bool)  # context under the other object stays "other"
    z = zone_map(mask, part, ctx, cls=0, band_px=1)
    assert [ZONES[i] for i in z[0]] == ["band", "regions", "body", "band", "context", "background", "other_objects"]
    ref = torch.tensor([[0.0, 0.9, 0.2, 0.0, 0.0, 0.0, 0.0]])
    new = torch.tensor([[0.6, 0.9, 0.7, 0.6, 0.6, 0.6, 0.1]])
    counts = added_zone_counts(ref, new, z, 0.5, 0.5)
    assert dict(zip(ZONES, counts.tolist())) == {"regions": 0, "body": 1, "other_objects": 0, "context": 1,
                                                 "band": 2, "background": 1}
    s = zone_shares(counts)
    assert s["added_pixels"] == 5 and s["band"] == pytest.approx(0.4) and s["body"] == pytest.approx(0.2)
    assert np.isnan(zone_shares(np.zeros(len(ZONES), np.int64))["body"])


def test_zone_analysis_pairs_sources_by_image_and_class():
    class R:  # a rendered image: the row above as a 1 x 7 image
        mask = np.array([[0, 1, 1, 0, 0, 0, 2]])
        part_index = np.array([[0, 1, 0, 0, 0, 0, 0]])
        context_mask = np.array([[0, 0, 0, 0, 1, 0, 1]], bool)

    def src(row):
        return {"image_ids": ["t000000"], "slot_image": torch.tensor([0]), "slot_class": torch.tensor([0]),
                "maps": torch.tensor([[row]])}

    out = zone_analysis(src([0.0, 0.9, 0.2, 0.0, 0.0, 0.0, 0.0]), src([0.6, 0.9, 0.7, 0.6, 0.6, 0.6, 0.1]),
                        lambda iid: R(), 0.5, 0.5, band_px=1)
    assert out["pairs"] == 1 and out["added_pixels"] == 5 and out["band"] == pytest.approx(0.4)
    assert out["body_recall_ref"] == 0.0 and out["body_recall_new"] == 1.0 and out["regions_recall_ref"] == 1.0


def test_zones_of_a_classifier_run(tmp_path, quick_voc):
    from wsss_lib.reporting.tables.pages import run_zone_analysis
    from wsss_lib.stages.classifier import run_classifier_stage

    run = run_classifier_stage(run_dir=str(tmp_path / "r"), quick=True, progress=False, epochs=3, batch_size=8)
    rows = run_zone_analysis(run, quick_voc, max_images=20)
    assert [r["thresholds"] for r in rows] == ["best thresholds", "common threshold 0.5"]
    for r in rows:
        shares = [r[z] for z in ZONES]
        assert r["added_pixels"] == 0 or sum(shares) == pytest.approx(1.0)
        assert 0 < r["pairs"] and r["band_px"] == pytest.approx(2 * 64 / 8)  # 2 cells of a 64 px image at stride 8
    with pytest.raises(ValueError, match="no attention source 'oaa_min'"):
        run_zone_analysis(run, quick_voc, new="oaa_min")
