import hashlib

import numpy as np
import pytest
from PIL import Image

from wsss_lib.data.spec import CLASS_NAMES, CONTEXT_OF_CLASS, BenchmarkSpec, voc_colormap
from wsss_lib.data.synthetic import generate_benchmark, render_image
from wsss_lib.util.io import read_json


def _tree_digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_generation_is_bit_identical_for_the_same_seed(tmp_path):
    spec = BenchmarkSpec(n_train=20, n_val=6, size=48, seed=7)
    a = generate_benchmark(tmp_path / "a", spec, progress=False)
    b = generate_benchmark(tmp_path / "b", spec, progress=False)
    assert _tree_digest(a) == _tree_digest(b)
    c = generate_benchmark(tmp_path / "c", BenchmarkSpec(n_train=20, n_val=6, size=48, seed=8),
                           progress=False)
    assert _tree_digest(a) != _tree_digest(c)


def test_layout_and_palette(small_voc):
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        assert (small_voc / sub).is_dir()
    ids = (small_voc / "ImageSets/Segmentation/train.txt").read_text().split()
    assert len(ids) == 12
    m = Image.open(small_voc / "SegmentationClass" / f"{ids[0]}.png")
    assert m.mode == "P"
    pal = np.array(m.getpalette()[:6]).reshape(2, 3)
    assert (pal == voc_colormap()[:2]).all()  # background black, class 1 dark red
    assert (small_voc / "classes.txt").read_text().split()[1:] == list(CLASS_NAMES)


def test_voc_colormap_known_entries():
    cmap = voc_colormap()
    assert cmap[1].tolist() == [128, 0, 0]
    assert cmap[15].tolist() == [192, 128, 128]  # VOC 'person'
    assert cmap[255].tolist() == [224, 224, 192]  # VOC ignore colour


def test_rendered_images_have_the_designed_properties():
    spec = BenchmarkSpec(n_train=200, n_val=10, size=96)
    n_obj, part_ratios, ctx_hits, ctx_total = [], [], 0, 0
    for i in range(200):
        r = render_image(spec, "train", i)
        assert r.image.shape == (96, 96, 3) and r.image.dtype == np.uint8
        assert 1 <= len(r.objects) <= 3
        n_obj.append(len(r.objects))
        # the discriminative part lies inside the object mask and is a small fraction of it
        assert not (r.part_mask & (r.mask == 0)).any()
        part_ratios.append(r.part_mask.sum() / max(1, (r.mask > 0).sum()))
        for c, name in CONTEXT_OF_CLASS.items():
            if c in r.objects:
                ctx_total += 1
                ctx_hits += name in r.contexts
    assert set(n_obj) == {1, 2, 3}
    assert 0.08 < np.mean(part_ratios) < 0.3
    assert ctx_hits / ctx_total > 0.6  # context usually co-occurs with its class


def test_benchmark_json_statistics(small_voc):
    meta = read_json(small_voc / "benchmark.json")
    st = meta["statistics"]["train"]
    assert st["images"] == 12
    assert sum(st["objects_per_image"].values()) == 12
    assert len(st["cooccurrence"]) == len(CLASS_NAMES)


@pytest.mark.parametrize("kw", [{"n_train": 0}, {"size": 8}, {"objects_probs": (0.5, 0.2)}])
def test_bad_spec_is_rejected_with_the_parameter_named(kw):
    with pytest.raises(ValueError, match=list(kw)[0]):
        BenchmarkSpec(**kw)


def test_refuses_to_overwrite(small_voc):
    with pytest.raises(FileExistsError, match="not empty"):
        generate_benchmark(small_voc.parents[1], BenchmarkSpec(n_train=2, n_val=1, size=48))
