"""The classifier + OAA stage end to end on the quick benchmark: outputs, resume, bad parameters."""

import json

import pytest
import torch

from wsss_lib.runs.attention_io import load_attention
from wsss_lib.data.voc import DataError
from wsss_lib.runs.folders import RunConflictError
from wsss_lib.stages.classifier import run_classifier_stage
from wsss_lib.engine.loop import TrainingInterrupted

SMALL = dict(quick=True, progress=False, epochs=3, batch_size=8)


def _maps(run):
    return {name: load_attention(run / "attention" / f"{name}.pt")["maps"] for name in ("cam", "oaa_max", "oaa_ave")}


@pytest.mark.parametrize("extra", [{}, {"augment": "flip_scale_crop", "checkpoint_every": 2}],
                         ids=["epoch-checkpoints", "mid-epoch-checkpoints+crops"])
def test_killed_run_resumes_to_the_same_final_maps(tmp_path, quick_voc, extra):
    ref = run_classifier_stage(run_dir=str(tmp_path / "ref"), **SMALL, **extra)
    killed = tmp_path / "killed"
    with pytest.raises(TrainingInterrupted):
        run_classifier_stage(run_dir=str(killed), stop_after_steps=9, **SMALL, **extra)  # mid epoch 2
    assert (killed / "checkpoint.pt").exists() and not (killed / "metrics.json").exists()
    ckpt = torch.load(killed / "checkpoint.pt", weights_only=False)
    assert ckpt["global_step"] in ((6,) if not extra else (8,))
    # the drift record of a finished epoch is written once, outside the checkpoint (which holds the rest)
    drift = ckpt["extra"]["drift"]
    assert drift["spilled"] == 1 and drift["maps"].shape[0] == (0 if not extra else 1)  # only the epoch in progress
    assert (killed / "drift_epochs" / "epoch_0.pt").exists()
    resumed = run_classifier_stage(run_dir=str(killed), **SMALL, **extra)
    a, b = _maps(ref), _maps(resumed)
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=0)
    assert json.loads((ref / "drift.json").read_text()) == json.loads((resumed / "drift.json").read_text())
    assert not (resumed / "drift_epochs").exists() and not (ref / "drift_epochs").exists()  # removed once finished
    assert json.loads((ref / "metrics.json").read_text())["oaa_max_miou"] == pytest.approx(
        json.loads((resumed / "metrics.json").read_text())["oaa_max_miou"], abs=1e-6)


def test_the_plain_cam_classifier_makes_no_oaa_map(tmp_path, quick_voc):
    # accumulate=False: a benchmark's properties can be measured before any OAA result on it exists
    ref = run_classifier_stage(run_dir=str(tmp_path / "ref"), **SMALL)
    run = run_classifier_stage(run_dir=str(tmp_path / "plain"), accumulate=False, **SMALL)
    assert sorted(p.name for p in (run / "attention").iterdir()) == ["cam.pt"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert not [k for k in metrics if k.startswith("oaa")] and "cam_miou" in metrics
    assert "oaa_max" not in torch.load(run / "snapshots.pt", weights_only=False)
    # the CAM classifier itself is the same network: the store never touched its training
    torch.testing.assert_close(load_attention(run / "attention" / "cam.pt")["maps"], _maps(ref)["cam"], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="accumulate='no' is invalid: expected True or False"):
        run_classifier_stage(run_dir=str(tmp_path / "bad"), accumulate="no", **SMALL)


def test_outputs_of_a_run(tmp_path, quick_voc):
    run = run_classifier_stage(run_dir=str(tmp_path / "r"), **SMALL)
    m = json.loads((run / "metrics.json").read_text())
    for key in ("cam_miou", "oaa_max_miou", "oaa_ave_miou", "cls_mAP_val", "cam_best_threshold"):
        assert isinstance(m[key], float)
    src = load_attention(run / "attention" / "oaa_max.pt")
    assert src["maps"].shape[0] == src["slot_image"].shape[0] == src["slot_class"].shape[0]
    assert 0 <= float(src["maps"].min()) and float(src["maps"].max()) <= 1.0 + 1e-3
    snaps = torch.load(run / "snapshots.pt", weights_only=False)
    assert snaps["maps"].shape[0] == 3 and bool(snaps["seen"].all())  # every epoch saw every snapshot image
    params = json.loads((run / "params.json").read_text())
    assert params["params"]["gate"] == "paper" and "torch" in params["environment"]
    # the same parameters reuse the finished run; other parameters in the same folder are refused
    assert run_classifier_stage(run_dir=str(run), **SMALL) == run
    with pytest.raises(RunConflictError, match="differing: lr"):
        run_classifier_stage(run_dir=str(run), **{**SMALL, "lr": 0.5})


@pytest.mark.parametrize("kw, match", [
    ({"backbone": "alexnet"}, "backbone='alexnet' is invalid: expected one of tiny, vgg16"),
    ({"batch_size": 0}, "batch_size=0 is invalid: expected an integer >= 1"),
    ({"gate": "sometimes"}, "gate='sometimes' is invalid"),
    ({"learning_rate": 0.1}, "unknown parameter"),
])
def test_bad_parameters_are_named(kw, match):
    with pytest.raises(ValueError, match=match):
        run_classifier_stage(quick=True, progress=False, **kw)


def test_data_root_not_in_voc_layout(tmp_path):
    with pytest.raises(DataError, match="not in VOC layout"):
        run_classifier_stage(data_root=str(tmp_path), quick=True, progress=False)
