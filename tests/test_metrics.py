import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import jaccard_score

from wsss_lib.formulas.metrics import confusion_matrix, iou_from_confusion, iou_table, mean_iou


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_confusion_and_iou_match_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    k = 5
    target = rng.integers(0, k, size=(4, 17, 13))
    target[rng.random(target.shape) < 0.1] = 255
    pred = np.where(rng.random(target.shape) < 0.6, target, rng.integers(0, k, size=target.shape))
    pred[pred == 255] = 0
    cm = confusion_matrix(torch.from_numpy(pred), torch.from_numpy(target), k)
    keep = target != 255
    ref = sk_confusion(target[keep], pred[keep], labels=list(range(k)))
    np.testing.assert_array_equal(cm, ref)
    ref_iou = jaccard_score(target[keep], pred[keep], labels=list(range(k)), average=None)
    np.testing.assert_allclose(iou_from_confusion(cm), ref_iou)
    assert mean_iou(cm) == pytest.approx(ref_iou.mean())


def test_hand_computed_iou():
    # gt:   0 0 1 1      pred: 0 1 1 1   -> class0: TP1 FP0 FN1 -> 1/2 ; class1: TP2 FP1 FN0 -> 2/3
    cm = confusion_matrix(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1]), 2)
    assert cm.tolist() == [[1, 1], [0, 2]]
    np.testing.assert_allclose(iou_from_confusion(cm), [0.5, 2 / 3])


def test_absent_class_is_nan_and_left_out_of_the_mean():
    cm = confusion_matrix(np.array([0, 1]), np.array([0, 1]), 3)
    iou = iou_from_confusion(cm)
    assert np.isnan(iou[2]) and mean_iou(cm) == 1.0


def test_out_of_range_values_are_named():
    with pytest.raises(ValueError, match="target has values outside 0..1"):
        confusion_matrix(np.array([0]), np.array([7]), 2)


def test_iou_table_has_a_miou_row():
    cm = confusion_matrix(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1]), 2)
    df = iou_table(cm, ["background", "thing"])
    assert df.loc["mIoU", "IoU"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert df.loc["thing", "recall"] == pytest.approx(1.0)
