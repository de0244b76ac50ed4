"""The training split is a setting of every stage (``train_split``; ``train_aug`` with ``sbd_root``):
runs on VOC + SBD read the papers' 10,582-image set, their downstream runs the same, and every
problem with the split is refused before any folder is made. Runs on the VOC-size rehearsal
(variable image sizes, SBD ``.mat`` masks)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from wsss_lib.data.rehearsal import write_rehearsal
from wsss_lib.data.voc import DataError, VOCLayout
from wsss_lib.stages import get_stage
from wsss_lib.util.io import read_json

SMALL = {"quick": True, "progress": False, "pretrained": False, "crop_size": 64}


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    out = write_rehearsal(tmp_path_factory.mktemp("reh") / "voc", 0.002, progress=False)
    return out / "VOCdevkit" / "VOC2012", out / "benchmark_RELEASE" / "dataset", out / "saliency"


def test_every_stage_of_a_train_aug_pipeline_reads_train_aug(rehearsal, tmp_path):
    voc, sbd, sal = rehearsal
    aug, train = VOCLayout(voc, "train_aug", sbd_root=sbd), VOCLayout(voc, "train")
    assert len(aug) > 3 * len(train)
    pl = get_stage("pseudo_labels")(data_root=str(voc), quick=True, progress=False, source="cam", mode="saliency",
                                    saliency_root=str(sal), train_split="train_aug", sbd_root=str(sbd),
                                    attention_params={"pretrained": False, "crop_size": 64})
    cls = get_stage("classifier").plan(data_root=str(voc), train_split="train_aug", sbd_root=str(sbd), **SMALL)
    assert read_json(pl / "params.json")["params"]["attention_run"] == cls.identity  # made for it, on train_aug
    info = read_json(pl / "params.json")
    up = info["paths"]["attention_run"]
    up_info = read_json(f"{up}/params.json")
    assert up_info["params"]["train_split"] == "train_aug" and up_info["params"]["sbd"]  # the .mat masks identified
    assert torch.load(f"{up}/attention/cam.pt", weights_only=False)["image_ids"] == aug.ids
    m = read_json(f"{up}/metrics.json")  # what the run cost, to plan a VOC-size one from
    ck = (Path(up) / "checkpoint.pt").stat().st_size
    assert m["checkpoint_bytes"] == ck and m["checkpoint_bytes_per_image"] == pytest.approx(ck / len(aug))
    assert m["peak_host_bytes"] > 50e6 and m["peak_host_bytes_per_image"] == pytest.approx(m["peak_host_bytes"] / len(aug))
    labels = sorted(p.stem for p in (pl / "SegmentationClassPseudo").glob("*.png"))
    assert labels == sorted(aug.ids)  # a pseudo label for every train_aug image, none for train alone


def test_train_aug_runs_are_other_runs_than_train_runs(rehearsal):
    voc, sbd, _ = rehearsal
    stage = get_stage("classifier")
    a = stage.plan(data_root=str(voc), train_split="train_aug", sbd_root=str(sbd), **SMALL)
    b = stage.plan(data_root=str(voc), **SMALL)
    assert a.identity != b.identity and b.params["train_split"] == "train"
    moved = stage.plan(data_root=str(voc), train_split="train_aug", sbd_root=str(sbd.parent), **SMALL)
    assert moved.identity == a.identity  # the SBD folder's content identifies it, not the path given


def test_split_problems_are_refused_before_any_folder(rehearsal, tmp_path):
    voc, sbd, _ = rehearsal
    run_dir = tmp_path / "run"
    stage = get_stage("classifier")
    with pytest.raises(DataError, match=r"train_aug.*needs .*train_aug.txt or sbd_root"):
        stage(data_root=str(voc), run_dir=str(run_dir), train_split="train_aug", **SMALL)
    with pytest.raises(DataError, match=r"split list .*trainn\.txt not found"):
        stage(data_root=str(voc), run_dir=str(run_dir), train_split="trainn", **SMALL)
    with pytest.raises(ValueError, match=r"train_split='\.\./x' is invalid: expected a split list name"):
        stage(data_root=str(voc), run_dir=str(run_dir), train_split="../x", **SMALL)
    with pytest.raises(FileNotFoundError, match=r"sbd_root='.*nowhere': no SBD dataset folder"):
        stage(data_root=str(voc), run_dir=str(run_dir), train_split="train_aug", sbd_root=str(tmp_path / "nowhere"),
              **SMALL)
    assert not run_dir.exists()


def test_an_upstream_run_of_another_split_is_refused(rehearsal, tmp_path):
    voc, sbd, sal = rehearsal
    cls = get_stage("classifier")(data_root=str(voc), run_dir=str(tmp_path / "cls"), **SMALL)
    with pytest.raises(ValueError, match=r"attention_run=.* was made on train_split='train', this run reads "
                                         r"train_split='train_aug'"):
        get_stage("pseudo_labels")(data_root=str(voc), run_dir=str(tmp_path / "pl"), quick=True, progress=False,
                                   source="cam", saliency_root=str(sal), attention_run=str(cls),
                                   train_split="train_aug", sbd_root=str(sbd))
    assert not (tmp_path / "pl").exists()


def test_the_command_line_trains_on_train_aug_where_voc_has_it(rehearsal, monkeypatch, capsys):
    """``python -m wsss_lib.experiments.launch STAGE data_root=VOC sbd_root=SBD`` with no ``train_split``
    reads the papers' train_aug (as the VOC job), says so, and ``train_split=train`` still asks for VOC's
    train list; the embedded benchmark keeps ``train``."""
    from wsss_lib.experiments import launch
    from wsss_lib.experiments.voc import default_train_split

    voc, sbd, _ = rehearsal
    planned = []
    monkeypatch.setattr(launch, "execute_plan", lambda plan, *a: planned.append(plan) or plan.folder)
    args = [f"data_root={voc}", "quick=true", "pretrained=false", "crop_size=64", "progress=false"]
    assert launch.main(["classifier", *args, f"sbd_root={sbd}"]) == 0
    assert planned[-1].params["train_split"] == "train_aug"
    assert "train_split=train_aug" in capsys.readouterr().err
    assert launch.main(["classifier", *args, f"sbd_root={sbd}", "train_split=train"]) == 0
    assert planned[-1].params["train_split"] == "train"
    assert launch.main(["classifier", *args]) == 0  # no SBD, no train_aug.txt: VOC's train list
    assert planned[-1].params["train_split"] == "train"
    assert default_train_split("embedded:mini", str(sbd)) is None
    assert default_train_split(str(voc / "no-such"), str(sbd)) is None  # the stage names the missing folder
