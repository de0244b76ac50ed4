"""No host synchronisation inside a training step, for every training stage.

On CPU the steps run under :class:`~wsss_lib.util.sync_guard.HostSyncGuard` (the tensor
operations that would make the host wait for a GPU raise); on a machine with CUDA the same tests
run under ``torch.cuda.set_sync_debug_mode("error")``. ``WSSS_SYNC_CHECK=1`` turns the check on for
every step that does not log (the upstream runs these stages make are checked too)."""

from __future__ import annotations

import pytest
import torch

from wsss_lib.formulas.accumulation import OAAStore
from wsss_lib.stages import get_stage, training_stages
from wsss_lib.engine.loop import TrainingInterrupted, amp_dtype
from wsss_lib.util.sync_guard import HostSyncError, HostSyncGuard, no_host_sync

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def test_guard_refuses_what_would_sync_and_allows_the_rest():
    x = torch.arange(6.0).view(2, 3)
    rows = torch.zeros(1, dtype=torch.long)
    with HostSyncGuard():
        x.index_fill_(0, rows, 0.0)  # the copy-free forms of what the last three below do
        x[rows] = torch.full((1, 3), 0.0)
        x[0].index_fill_(0, rows, 1.0)
        y = torch.where(x > 2, x, torch.zeros_like(x)).sum()  # fixed-size work is fine
        x[0, 1] = 7.0
        x.to(torch.float64), x.to("cpu", non_blocking=True)  # a dtype change, a copy that does not wait
        for bad in (lambda: y.item(), lambda: x.tolist(), lambda: x.nonzero(), lambda: x[x > 2],
                    lambda: bool(y), lambda: float(y), lambda: torch.where(x > 2),
                    lambda: torch.tensor([0.5, 0.2]), lambda: torch.as_tensor((1, 2)),
                    lambda: x.__setitem__(rows, 0.0), lambda: x.__setitem__((0, rows), True),
                    lambda: x.to(torch.device("cpu")), lambda: x.to("cpu"), lambda: x.to(device="cpu")):
            with pytest.raises(HostSyncError):
                bad()
    assert float(y) == 12.0  # outside the guard nothing is checked
    with no_host_sync(torch.device("cpu"), enabled=False):
        assert y.item() == 12.0


def test_store_update_is_sync_free_and_counts_on_device():
    labels = torch.tensor([[1, 0, 1], [0, 1, 0]])
    store = OAAStore(["a", "b"], labels, (2, 2), gate="all", last_epoch_fallback=True)
    att, order = torch.rand(2, 3, 2, 2), torch.tensor([1, 0])
    with HostSyncGuard():
        n = store.update(order, att, None, torch.rand(2, 3), labels[[1, 0]], epoch=0, last_epoch=True)
    assert int(n) == 3 and store.counts.tolist() == [1, 1, 1]
    torch.testing.assert_close(store.maps["max"][0], att[1, 0])  # slot 0 = image a, class 0 (batch row 1)
    torch.testing.assert_close(store.maps["max"][2], att[0, 1])  # slot 2 = image b, class 1 (batch row 0)


def test_amp_dtype():
    assert amp_dtype(torch.device("cpu"), True) is None and amp_dtype(torch.device("cuda"), False) is None


@pytest.fixture
def sync_check(monkeypatch):
    monkeypatch.setenv("WSSS_SYNC_CHECK", "1")


@pytest.mark.parametrize("stage", [st.name for st in training_stages()])  # every registered training stage
def test_training_step_of_every_stage_has_no_host_sync(stage, tmp_path, sync_check, quick_voc):
    # 3 guarded steps of the stage itself (its upstream runs, made now, are guarded all the way)
    with pytest.raises(TrainingInterrupted, match="stopped after 3 steps"):
        get_stage(stage)(quick=True, run_dir=str(tmp_path / stage), device=DEVICE, progress=False, stop_after_steps=3)


def test_a_step_that_reads_a_value_is_caught(tmp_path, sync_check, monkeypatch, quick_voc):
    import wsss_lib.stages.classifier as clf

    real = clf.class_scores

    def leaky(F):  # the kind of line the check exists for: a loss value read in every step
        s = real(F)
        print(float(s.mean()))
        return s

    monkeypatch.setattr(clf, "class_scores", leaky)
    with pytest.raises((HostSyncError, RuntimeError), match="training step|synchroniz"):
        get_stage("classifier")(quick=True, run_dir=str(tmp_path / "leaky"), device=DEVICE, progress=False,
                                stop_after_steps=3)


def test_variable_size_images_take_one_copy_and_render_as_each_image_alone():
    """VOC images differ in size: a batch of them goes to the device as one padded canvas, with no
    blocking copy per image (the guard refuses one), and every view equals the view rendered from its
    own image alone (the per-image rendering restated here), for flips, crops and zoom-outs."""
    from wsss_lib.data.transforms import ViewGeometry, normalize_images, render_views, sample_geometry
    from wsss_lib.engine.loop import collate_samples, make_views

    g = torch.Generator().manual_seed(0)
    shapes = [(37, 50), (41, 29), (50, 50), (23, 61)]
    images = [torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8) for h, w in shapes]
    rng = __import__("numpy").random.default_rng(0)
    geos = [sample_geometry(rng, "flip_scale_crop", (0.5, 1.0)).as_tensor() for _ in images[:3]]
    geos.append(ViewGeometry(0.2, -0.1, 1.3, 1.2, True).as_tensor())  # reaches outside the image
    geo = torch.stack(geos)
    want = torch.cat([render_views(normalize_images(im[None]), gg[None], 33) for im, gg in zip(images, geo)])
    raw = collate_samples([{"image": im, "label": torch.zeros(3), "index": k, "id": str(k)}
                           for k, im in enumerate(images)])
    assert raw["images"].shape == (4, 3, 50, 61) and raw["sizes"].tolist() == [list(s) for s in shapes]
    with HostSyncGuard():
        batched = make_views(raw["images"], geo, 33, torch.device("cpu"), sizes=raw["sizes"])
    listed = make_views(images, geo, 33, torch.device("cpu"))  # inference's form: a list, padded here
    torch.testing.assert_close(batched, want, atol=1e-4, rtol=0)  # float32 coordinates: ~1e-5
    torch.testing.assert_close(listed, want, atol=1e-4, rtol=0)
    same = collate_samples([{"image": im, "label": torch.zeros(3), "index": 0, "id": "a"} for im in images[2:3] * 2])
    assert same["sizes"] is None and same["images"].shape == (2, 3, 50, 50)  # equal sizes: a plain stack


def test_cam_scoring_on_the_device_counts_what_the_host_counts(quick_voc):
    """CAMEvaluator on the run's device (the GPU where there is one) gives the confusion matrices of
    the host, up to the bilinear upsampling's last bits (a pixel within 1e-6 of a threshold)."""
    from wsss_lib.data.voc import VOCLayout
    from wsss_lib.engine.common import dense_source
    from wsss_lib.formulas.evaluation import CAMEvaluator

    layout = VOCLayout(quick_voc, "train")
    g = torch.Generator().manual_seed(0)
    source = dense_source(torch.rand(len(layout), layout.num_classes - 1, 9, 9, generator=g), layout)
    host = CAMEvaluator(layout).confusion(source)
    dev = CAMEvaluator(layout, device=DEVICE).confusion(source)
    assert dev.device.type == "cpu" and dev.shape == host.shape
    assert (dev - host).abs().sum() <= 1e-4 * host.sum()
