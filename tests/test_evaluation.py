"""CAM mIoU: the vectorized threshold sweep equals a plain per-image, per-threshold loop."""

import numpy as np
import pytest
import torch
import torch.nn.functional as Fn

from wsss_lib.data import VOCLayout
from wsss_lib.formulas.evaluation import CAMEvaluator, mean_average_precision
from wsss_lib.formulas.metrics import confusion_matrix


def _random_source(layout, size=(8, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    pairs = torch.from_numpy(layout.labels).nonzero()
    return {"image_ids": layout.ids, "slot_image": pairs[:, 0], "slot_class": pairs[:, 1],
            "maps": torch.rand((len(pairs), *size), generator=g)}


def _reference(layout, src, thresholds):
    k1 = layout.num_classes
    cms = np.zeros((len(thresholds), k1, k1), dtype=np.int64)
    for i in range(len(layout)):
        gt = torch.from_numpy(layout.load_mask(i).astype(np.int64))
        sel = (src["slot_image"] == i).nonzero().flatten()
        maps = Fn.interpolate(src["maps"][sel][None], size=gt.shape, mode="bilinear", align_corners=False)[0]
        for t, thr in enumerate(thresholds):
            scores = torch.cat([torch.full((1, *gt.shape), thr), maps])
            labels = torch.cat([torch.zeros(1, dtype=torch.long), src["slot_class"][sel] + 1])
            pred = labels[scores.argmax(0)]
            cms[t] += confusion_matrix(pred, gt, k1)
    return cms


def test_vectorized_sweep_equals_reference(quick_voc):
    layout = VOCLayout(quick_voc, "train")
    thresholds = (0.1, 0.35, 0.6, 0.85)
    src = _random_source(layout)
    ev = CAMEvaluator(layout, thresholds)
    np.testing.assert_array_equal(ev.confusion(src, chunk=7).numpy(), _reference(layout, src, thresholds))


def test_hand_computed_two_pixel_case(tmp_path):
    """One 1x2 image of class 1 on its left pixel; map [0.8, 0.3]:
    threshold 0.5 -> pred [1, 0] (perfect); threshold 0.2 -> pred [1, 1] (IoU bg 0, fg 1/2)."""
    from PIL import Image

    voc = tmp_path / "VOC2012"
    (voc / "JPEGImages").mkdir(parents=True)
    (voc / "SegmentationClass").mkdir()
    (voc / "ImageSets/Segmentation").mkdir(parents=True)
    Image.fromarray(np.zeros((1, 2, 3), np.uint8)).save(voc / "JPEGImages/x.jpg")
    Image.fromarray(np.array([[1, 0]], np.uint8), mode="L").save(voc / "SegmentationClass/x.png")
    (voc / "ImageSets/Segmentation/train.txt").write_text("x\n")
    (voc / "classes.txt").write_text("background\nthing\n")
    layout = VOCLayout(voc, "train", label_cache=tmp_path / "c")
    src = {"image_ids": ["x"], "slot_image": torch.tensor([0]), "slot_class": torch.tensor([0]),
           "maps": torch.tensor([[[0.8, 0.3]]])}
    r = CAMEvaluator(layout, (0.2, 0.5)).evaluate(src)
    assert r["miou_curve"] == pytest.approx([0.25, 1.0])
    assert r["best_threshold"] == pytest.approx(0.5) and r["miou"] == pytest.approx(1.0)


def test_missing_images_in_a_source_are_an_error(quick_voc):
    layout = VOCLayout(quick_voc, "train")
    src = _random_source(layout)
    src["image_ids"] = src["image_ids"][:-3]
    with pytest.raises(ValueError, match="lacks maps for 3 of 48 images"):
        CAMEvaluator(layout).confusion(src)


def test_map_by_hand():
    scores = np.array([[0.9, 0.1], [0.8, 0.7], [0.2, 0.3]])
    labels = np.array([[1, 0], [1, 1], [0, 1]])
    # class 0: positives ranked 1st and 2nd -> AP 1; class 1: ranks 0.3 (pos), 0.7 (pos), 0.1 (neg) -> AP 1
    assert mean_average_precision(scores, labels) == pytest.approx(1.0)
    labels2 = np.array([[0, 0], [1, 1], [1, 1]])
    # class 0: scores .9 (neg) .8 (pos) .2 (pos) -> precision at hits: 1/2, 2/3 -> AP 7/12
    assert mean_average_precision(scores, labels2) == pytest.approx((7 / 12 + 1.0) / 2)


def test_masks_are_read_once_as_uint8_and_shared_by_every_evaluator(small_voc):
    """Scorers keep one byte a mask pixel, one copy per process (VOC train_aug: 2 GB, not 16 GB per
    scorer); an edited mask is read again."""
    from PIL import Image

    lay = VOCLayout(small_voc, "train")
    a, b = CAMEvaluator(lay), CAMEvaluator(VOCLayout(small_voc, "train").first(5))
    assert {m.dtype for m in a.masks} == {torch.uint8}
    assert all(a.masks[i].data_ptr() == b.masks[i].data_ptr() for i in range(5))
    assert all(np.array_equal(a.masks[i].numpy(), lay.load_mask(i)) for i in range(len(lay)))
    m = lay.load_mask(2).copy()
    m[:4, :4] = 255
    Image.fromarray(m, mode="L").save(lay.mask_path(2))
    assert (CAMEvaluator(lay).masks[2][:4, :4] == 255).all()
