import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import savemat
from torchvision.datasets import VOCSegmentation

from wsss_lib.data.voc import DataError, VOCLayout, VOCSegDataset, resolve_voc_root


def test_reader_matches_torchvision_on_the_generated_folder(quick_voc):
    ours = VOCSegDataset(VOCLayout(quick_voc, "train"))
    tv = VOCSegmentation(root=str(quick_voc.parents[1]), year="2012", image_set="train", download=False)
    assert len(ours) == len(tv) == 48
    for i in range(len(ours)):
        s = ours[i]
        img, mask = tv[i]
        assert s["id"] == ours.layout.ids[i]
        np.testing.assert_array_equal(s["image"].permute(1, 2, 0).numpy(), np.asarray(img.convert("RGB")))
        np.testing.assert_array_equal(s["mask"].numpy(), np.asarray(mask))


def test_labels_match_masks_and_voc_classification_lists(quick_voc):
    lay = VOCLayout(quick_voc, "val")
    assert lay.labels.shape == (16, len(lay.class_names) - 1)
    assert lay.labels.any(1).all()  # every image has an object
    for c, name in enumerate(lay.class_names[1:]):
        rows = dict(line.split() for line in (quick_voc / f"ImageSets/Main/{name}_val.txt").read_text().splitlines())
        assert [rows[i] == "1" for i in lay.ids] == lay.labels[:, c].tolist()
    for i in range(len(lay)):
        present = set(np.unique(lay.load_mask(i)).tolist()) - {0, 255}
        assert present == set((np.flatnonzero(lay.labels[i]) + 1).tolist())


def test_root_may_be_voc2012_vocdevkit_or_above(quick_voc):
    for r in (quick_voc, quick_voc.parent, quick_voc.parents[1]):
        assert resolve_voc_root(r) == quick_voc


def test_sample_types(quick_voc):
    s = VOCSegDataset(VOCLayout(quick_voc, "train"), cache_in_memory=True)[0]
    assert s["image"].dtype == torch.uint8 and s["image"].shape[0] == 3
    assert s["label"].dtype == torch.float32 and s["mask"].dtype == torch.int64


# -- bad input: each error names the file and says what was expected --------------------------

def test_missing_root(tmp_path):
    with pytest.raises(DataError, match="does not exist.*JPEGImages"):
        VOCLayout(tmp_path / "nowhere")


def test_root_not_in_voc_layout(tmp_path):
    with pytest.raises(DataError, match="not in VOC layout"):
        VOCLayout(tmp_path)


def test_missing_split_list(small_voc):
    with pytest.raises(DataError, match=r"test\.txt not found"):
        VOCLayout(small_voc, "test")


def test_missing_image(small_voc, tmp_path):
    lay = VOCLayout(small_voc, "train", label_cache=tmp_path)
    lay.image_path(0).unlink()
    with pytest.raises(DataError, match=f"{lay.ids[0]}.jpg not found"):
        VOCSegDataset(lay)[0]


def test_corrupt_image(small_voc, tmp_path):
    lay = VOCLayout(small_voc, "train", label_cache=tmp_path)
    lay.image_path(1).write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match=f"{lay.ids[1]}.jpg could not be decoded"):
        VOCSegDataset(lay)[1]


def test_mask_value_out_of_range(small_voc, tmp_path):
    ids = (small_voc / "ImageSets/Segmentation/train.txt").read_text().split()
    Image.fromarray(np.full((48, 48), 42, np.uint8), mode="L").save(small_voc / f"SegmentationClass/{ids[2]}.png")
    with pytest.raises(DataError, match=rf"{ids[2]}.png has values \[42\] outside the class range 0..8"):
        VOCLayout(small_voc, "train", label_cache=tmp_path)


def test_mask_size_mismatch(small_voc, tmp_path):
    lay = VOCLayout(small_voc, "train", label_cache=tmp_path)
    Image.fromarray(np.zeros((40, 48), np.uint8), mode="L").save(lay.mask_path(3))
    with pytest.raises(DataError, match="is 48x40 but image .* is 48x48"):
        VOCSegDataset(lay)[3]


def test_missing_mask_for_labels(small_voc, tmp_path):
    ids = (small_voc / "ImageSets/Segmentation/val.txt").read_text().split()
    (small_voc / f"SegmentationClass/{ids[0]}.png").unlink()
    with pytest.raises(DataError, match=f"no mask for image id '{ids[0]}'"):
        VOCLayout(small_voc, "val", label_cache=tmp_path)


def test_train_aug_from_sbd(small_voc, tmp_path):
    """train_aug = SBD train+val + VOC train - VOC val, SBD masks read from cls/*.mat."""
    seg = small_voc / "ImageSets/Segmentation"
    voc_train, voc_val = seg.joinpath("train.txt").read_text().split(), seg.joinpath("val.txt").read_text().split()
    sbd = tmp_path / "sbd"
    (sbd / "cls").mkdir(parents=True)
    extra = "2011_000001"
    Image.fromarray(np.zeros((48, 48, 3), np.uint8)).save(small_voc / f"JPEGImages/{extra}.jpg")
    m = np.zeros((48, 48), np.uint8)
    m[10:20, 10:20] = 3
    savemat(sbd / "cls" / f"{extra}.mat", {"GTcls": {"Segmentation": m}})
    (sbd / "train.txt").write_text(f"{extra}\n{voc_val[0]}\n")
    (sbd / "val.txt").write_text(f"{voc_train[0]}\n")
    with pytest.raises(DataError, match="train_aug"):
        VOCLayout(small_voc, "train_aug", label_cache=tmp_path)
    lay = VOCLayout(small_voc, "train_aug", sbd_root=sbd, label_cache=tmp_path)
    assert lay.ids == sorted(set(voc_train) | {extra})
    k = lay.ids.index(extra)
    assert np.flatnonzero(lay.labels[k]).tolist() == [2]
    np.testing.assert_array_equal(lay.load_mask(k), m)


def test_check_lists_every_bad_file_before_training(small_voc, tmp_path):
    """A corrupt JPEG and a mask of the wrong size are both reported at once, before any training,
    and no run folder is left behind."""
    from wsss_lib.stages.classifier import run_classifier_stage

    lay = VOCLayout(small_voc, "train", label_cache=tmp_path)
    lay.check()  # a clean split passes (and the pass is remembered)
    lay.image_path(1).write_bytes(b"\xff\xd8 not really a jpeg")
    Image.fromarray(np.zeros((40, 48), np.uint8), mode="L").save(lay.mask_path(3))
    with pytest.raises(DataError, match=r"2 bad file\(s\)(.|\n)*" + f"{lay.ids[1]}.jpg could not be decoded"
                       + r"(.|\n)*is 48x40 but image"):
        lay.check()
    with pytest.raises(DataError, match=r"2 bad file\(s\)"):
        run_classifier_stage(data_root=str(small_voc), run_dir=str(tmp_path / "run"), quick=True, progress=False)
    assert not (tmp_path / "run").exists()


def test_subset_keeps_ids_labels_and_masks_in_order(quick_voc):
    lay = VOCLayout(quick_voc, "train")
    sub = lay.subset([5, 0, 7])
    assert sub.ids == [lay.ids[5], lay.ids[0], lay.ids[7]] and (sub.labels == lay.labels[[5, 0, 7]]).all()
    assert np.array_equal(sub.load_mask(0), lay.load_mask(5)) and len(lay) == 48
    with pytest.raises(IndexError, match=r"indices \[48\] are outside split 'train' of 48 images"):
        lay.subset([1, 48])


def test_epoch_miou_of_snapshots_scores_each_epoch_on_its_images(quick_voc):
    from wsss_lib.engine.common import snapshot_epoch_miou

    lay = VOCLayout(quick_voc, "train")
    idx = [0, 3, 9]
    perfect = torch.zeros(3, lay.num_classes - 1, 64, 64)
    for j, i in enumerate(idx):
        m = torch.from_numpy(lay.load_mask(i).astype(np.int64))
        for c in range(1, lay.num_classes):
            perfect[j, c - 1] = (m == c).float()
    snaps = {"indices": idx, "maps": torch.stack([torch.zeros_like(perfect), perfect]),
             "seen": torch.tensor([[True] * 3, [True] * 3])}
    miou = snapshot_epoch_miou(snaps, lay)
    assert miou[1] == pytest.approx(1.0) and miou[0] < 0.5  # the masks themselves; then empty maps
    snaps["seen"][1, 0] = False  # an image not seen at epoch 2 counts as empty maps
    assert snapshot_epoch_miou(snaps, lay)[1] < 1.0
