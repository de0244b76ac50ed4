"""The VOC-size rehearsal folder (python -m wsss_lib.data.rehearsal): VOC's lists and formats, read
by the VOC code path as real VOC + SBD would be."""

from __future__ import annotations

import numpy as np
import pytest

from wsss_lib.data.rehearsal import Counts, border_band, main, plan_ids, write_rehearsal
from wsss_lib.data.voc import VOCLayout


def test_counts_are_vocs_times_the_fraction_and_train_aug_leaves_val_out():
    c = Counts.of(1.0)
    ids = plan_ids(c)
    assert (len(ids["voc_train"]), len(ids["voc_val"]), len(ids["sbd_train"]), len(ids["sbd_val"])) == (1464, 1449, 8498, 2857)
    aug = (set(ids["sbd_train"]) | set(ids["sbd_val"]) | set(ids["voc_train"])) - set(ids["voc_val"])
    assert set(ids["sbd_train"]) & set(ids["voc_val"])  # SBD train holds some VOC val images, as the real one
    assert len(aug) == 1464 + 8498 + 2857 - int(0.85 * 1464) - 144  # every list's own images, once
    with pytest.raises(ValueError, match="fraction"):
        Counts.of(0)


def test_border_band_marks_label_changes_only():
    m = np.zeros((11, 11), np.uint8)
    m[2:8, 2:8] = 4
    b = border_band(m, width=3)
    assert b[0, 0] == 0 and b[5, 5] == 4 and b[2, 2] == 255 and b[5, 1] == 255 and b[5, 3] == 255 and b[5, 4] == 4


def test_rehearsal_reads_as_voc_with_sbd(tmp_path):
    out = write_rehearsal(tmp_path / "reh", 0.002, progress=False)
    assert not (tmp_path / "reh.partial").exists()
    voc, sbd = out / "VOCdevkit" / "VOC2012", out / "benchmark_RELEASE" / "dataset"
    aug = VOCLayout(voc, "train_aug", sbd_root=sbd)
    val = VOCLayout(voc, "val")
    assert not set(aug.ids) & set(val.ids)
    shapes = {aug.load_image(i).shape for i in range(len(aug))}
    assert len(shapes) > 1  # variable sizes, as VOC's
    suffixes = {aug.mask_path(i).suffix for i in range(len(aug))}
    assert suffixes == {".png", ".mat"}  # VOC masks where VOC has one, SBD's .mat elsewhere
    for i in range(len(aug)):
        m = aug.load_mask(i)
        assert m.shape == aug.load_image(i).shape[:2] and m.dtype == np.uint8
        assert (out / "saliency" / f"{aug.ids[i]}.png").exists()
    assert aug.labels.sum(1).min() >= 1  # every image has a class
    val.check()


def test_rehearsal_refuses_a_folder_with_content(tmp_path, capsys):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    assert main([str(tmp_path / "x"), "--fraction", "0.002"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main([str(tmp_path / "y"), "--fraction", "2"]) == 2
    assert not (tmp_path / "y").exists()
