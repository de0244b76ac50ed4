"""Pseudo-label assembly on hand-made maps, the official gen_gt.py rule restated,
and palette PNGs read back by torchvision's VOC reader."""

import numpy as np
import pytest

from wsss_lib.formulas.label_rules import IGNORE, read_label_png, saliency_labels, threshold_labels, write_label_png


def test_threshold_labels_by_hand():
    # two present classes (foreground indices 2 and 5) on a 1 x 4 image
    att = np.array([[[0.9, 0.2, 0.4, 0.1]],
                    [[0.5, 0.6, 0.4, 0.2]]])
    got = threshold_labels(att, [2, 5], threshold=0.3)
    # argmax among present classes only (+1 for background at 0); below 0.3 everywhere -> background;
    # a tie (0.4, 0.4) goes to the lowest class index, in whatever order the classes are listed
    assert got.tolist() == [[3, 6, 3, 0]]
    assert threshold_labels(att[::-1], [5, 2], threshold=0.3).tolist() == [[3, 6, 3, 0]]
    assert threshold_labels(att, [2, 5], threshold=0.95).tolist() == [[0, 0, 0, 0]]
    assert threshold_labels(np.zeros((0, 1, 3)), [], 0.3).tolist() == [[0, 0, 0]]
    with pytest.raises(ValueError, match="one map per present class"):
        threshold_labels(att, [2], 0.3)


def test_saliency_labels_by_hand():
    # 1 x 5 image, one present class (index 1 -> label 2); attention already spans [0, 1]
    att = np.array([[[1.0, 0.5, 0.1, 0.0, 0.95]]])
    sal = np.array([[0.9, 0.8, 0.05, 0.5, 0.0]])
    got = saliency_labels(att, [1], sal, min_fg_ratio=0)
    # px0: bg score 0.1 -> dropped, class 1.0 -> label 2
    # px1: bg 0.2 dropped, class 0.5 -> 2
    # px2: bg 0.95, class 0.1 dropped -> background, not salient (0.05 < 32/255) -> 0
    # px3: bg 0.5, class 0 -> background, but salient (0.5) -> conflict of cues -> 255
    # px4: bg 1.0 and class 0.95 both > 0.9 -> conflict between scores -> 255
    assert got.tolist() == [[2, 2, 0, IGNORE, IGNORE]]
    # too little confident foreground: the whole image is ignored
    assert (saliency_labels(att, [1], sal, min_fg_ratio=0.5) == IGNORE).all()
    with pytest.raises(ValueError, match="saliency map of shape"):
        saliency_labels(att, [1], np.zeros((2, 5)))


def official_gen_gt(atts, classes, sal255, conflict=0.9):
    """OAA-PyTorch gen_gt.py's label rule, restated from reading it (PengtaoJiang/OAA-PyTorch):
    gt[0] = 1 - sal/255, gt[cls+1] = min-max normalized attention, sal_att = max(sal, (att>0.8)*255),
    gt[gt<0.3] = 0, >1 channel above 0.9 -> 255, argmax, background with sal_att >= 32 -> 255, and an
    image with < 1% valid foreground entirely 255."""
    h, w = sal255.shape
    gt = np.zeros((21, h, w), dtype=np.float32)
    sal = sal255.astype(np.float32)
    gt[0] = 1 - sal / 255
    sal_att = sal.copy()
    for cls, att in zip(classes, atts):
        att = (att - att.min()) / (att.max() - att.min() + 1e-8)
        gt[cls + 1] = att
        sal_att = np.maximum(sal_att, (att > 0.8) * 255)
    gt[gt < 0.3] = 0
    many = (gt > conflict).astype(np.uint8).sum(0)
    lab = gt.argmax(0).astype(np.uint8)
    lab[many > 1] = 255
    lab[(sal_att >= 32) & (lab == 0)] = 255
    if ((lab > 0) & (lab < 255)).sum() / (h * w) < 0.01:
        lab[...] = 255
    return lab


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("levels", [0, 4])
def test_saliency_labels_match_the_official_rule(seed, levels):
    # levels=4: attention on 5 grey levels, so two classes often tie; classes listed in a random order
    rng = np.random.default_rng(seed)
    classes = rng.choice(20, size=rng.integers(2, 4), replace=False).tolist()
    atts = rng.random((len(classes), 24, 32)).astype(np.float32) ** 2
    if levels:
        atts = np.round(atts * levels) / levels
        atts[:, 0, :2] = [[0.0, 1.0]]  # every map spans [0, 1]: min-max leaves the levels as they are
    sal255 = (rng.random((24, 32)) * 255).round().astype(np.uint8)
    ours = saliency_labels(atts, classes, sal255 / 255.0, conflict=1.0)
    assert np.array_equal(ours, official_gen_gt(atts, classes, sal255, conflict=1.0))
    assert len(np.unique(ours)) > 2  # the case is not trivial


def test_palette_png_round_trip_and_torchvision_reader(tmp_path):
    from PIL import Image
    from torchvision.datasets import VOCSegmentation

    lab = np.array([[0, 1, 2], [20, 255, 0]], dtype=np.uint8)
    root = tmp_path / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    write_label_png(root / "SegmentationClass" / "a.png", lab)
    Image.fromarray(np.zeros((2, 3, 3), dtype=np.uint8)).save(root / "JPEGImages" / "a.jpg")
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("a\n")
    assert np.array_equal(read_label_png(root / "SegmentationClass" / "a.png"), lab)
    _, target = VOCSegmentation(str(tmp_path), year="2012", image_set="train", download=False)[0]
    assert target.mode == "P" and np.array_equal(np.array(target), lab)
    assert target.getpalette()[3:6] == [128, 0, 0]  # VOC colour of label 1
