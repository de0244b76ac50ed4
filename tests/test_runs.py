"""Run identity: what a run was computed with (data content, resolved config, profile, weights,
upstream runs), never where things live; stale code made again or kept loudly; locks; permissions;
corrupt files named; no folder left by a failed check; a read-only runs folder."""

import json
import os
import shutil
import stat
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from wsss_lib.runs.identity import data_identity
from wsss_lib.runs.folders import (StaleRunWarning, find_run, prepare_run, run_identity, stage_entry, upstream_run,
                           write_metrics)
from wsss_lib.stages import get_stage

Q = dict(quick=True, progress=False)


def test_identity_ignores_where_the_data_and_runs_live(tmp_path, quick_voc, monkeypatch):
    copy = tmp_path / "elsewhere" / "voc"
    shutil.copytree(quick_voc, copy)
    assert data_identity(copy) == data_identity(quick_voc) and data_identity(copy).startswith("embedded:")
    monkeypatch.setenv("WSSS_RUNS", str(tmp_path / "runs1"))
    up, _ = prepare_run("oaa", {"data": data_identity(quick_voc), "seed": 0}, paths={"data_root": str(quick_voc)})
    write_metrics(up, {"m": 1.0})
    down, _ = prepare_run("amr-AMR", {"init_run": run_identity(up), "seed": 0},
                          paths={"data_root": str(copy), "init_run": str(up)})
    assert json.loads((down / "params.json").read_text())["params"]["init_run"] == up.name
    assert upstream_run(down, "init_run") == up
    # the checkout (and its runs folder) moves: same identities, the upstream is found by identity
    shutil.move(str(tmp_path / "runs1"), str(tmp_path / "runs2"))
    monkeypatch.setenv("WSSS_RUNS", str(tmp_path / "runs2"))
    moved_down = tmp_path / "runs2" / down.name
    assert upstream_run(moved_down, "init_run") == tmp_path / "runs2" / up.name
    assert find_run(up.name) == tmp_path / "runs2" / up.name
    shutil.rmtree(tmp_path / "runs2" / up.name)
    with pytest.raises(FileNotFoundError, match=f"init_run='{up.name}'"):
        upstream_run(moved_down, "init_run")


def test_an_edited_copy_of_the_benchmark_gets_a_new_identity_and_new_runs(tmp_path, small_voc):
    copy = tmp_path / "copy" / "voc"
    shutil.copytree(small_voc, copy)
    before = data_identity(copy)
    mask = copy / "SegmentationClass" / "t000003.png"
    img = Image.open(mask)
    arr = np.array(img)
    arr[:4, :4] = 1  # one edited mask; benchmark.json (and its recorded digest) untouched
    out = Image.fromarray(arr, mode="P")
    out.putpalette(img.getpalette())
    out.save(mask)
    assert data_identity(copy) != before
    plans = [get_stage("classifier").plan(data_root=str(root), **Q) for root in (small_voc, copy)]
    assert plans[0].params["data"] != plans[1].params["data"] and plans[0].identity != plans[1].identity


def set_default(monkeypatch, cls, name: str, value) -> None:
    """Change a config field's default, as an edit of the dataclass would."""
    import inspect

    names = list(inspect.signature(cls.__init__).parameters)[1:]
    defaults = list(cls.__init__.__defaults__)
    defaults[names.index(name) - (len(names) - len(defaults))] = value
    monkeypatch.setattr(cls.__init__, "__defaults__", tuple(defaults))


def test_changing_a_default_changes_the_run(monkeypatch, quick_voc):
    from wsss_lib.stages.classifier import ClassifierConfig

    stage = get_stage("classifier")
    a = stage.plan(**Q).identity
    assert stage.plan(gate="paper", **Q).identity == a  # a default written out is the same run
    set_default(monkeypatch, ClassifierConfig, "gate", "topk")  # the default changes
    assert stage.plan(**Q).identity != a
    # and the runs made for a downstream stage follow (its upstream identity is part of its own)
    monkeypatch.undo()
    b = get_stage("oaa_plus").plan(**Q)
    set_default(monkeypatch, ClassifierConfig, "gate_start_epoch", 2)
    assert get_stage("oaa_plus").plan(**Q).params["oaa_run"] != b.params["oaa_run"]


def test_settings_are_inherited_by_the_upstream_runs_made_for_a_stage(quick_voc):
    seg = get_stage("segmentation").plan(pretrained=False, pseudo_params={"source": "oaa_plus"}, **Q)
    pseudo = seg.upstream["pseudo_run"]
    plus = pseudo.upstream["attention_run"]
    cls = plus.upstream["oaa_run"]
    assert [p.cfg.pretrained for p in (seg, plus, cls)] == [False, False, False]
    assert cls.params["weights"] == [] and seg.params["weights"] == []
    # an explicit upstream parameter wins over the inherited one
    seg2 = get_stage("segmentation").plan(pretrained=False, pseudo_params={
        "source": "oaa_plus", "attention_params": {"pretrained": True}}, **Q)
    assert seg2.upstream["pseudo_run"].upstream["attention_run"].cfg.pretrained is True


def test_a_stale_run_is_made_again_or_kept_loudly(tmp_path, monkeypatch, capsys):
    run, finished = prepare_run("oaa", {"seed": 1}, "code-a", tmp_path / "r")
    assert not finished and json.loads((run / "params.json").read_text())["code_digest"] == "code-a"
    write_metrics(run, {"m": 1.0})
    assert prepare_run("oaa", {"seed": 1}, "code-a", tmp_path / "r") == (run, True)
    monkeypatch.setenv("WSSS_STALE", "keep")
    with pytest.warns(StaleRunWarning, match="made by other wsss_lib code"):
        assert prepare_run("oaa", {"seed": 1}, "code-b", tmp_path / "r") == (run, True)
    assert "reusing its results" in capsys.readouterr().err
    monkeypatch.setenv("WSSS_STALE", "rerun")
    assert prepare_run("oaa", {"seed": 1}, "code-b", tmp_path / "r") == (run, False)  # made again
    assert not (run / "metrics.json").exists()
    assert json.loads((run / "params.json").read_text())["code_digest"] == "code-b"


def test_stale_code_is_recorded_and_found_through_the_upstream_chain(quick_voc, monkeypatch):
    from wsss_lib.stages.base import expected_code

    plus = get_stage("oaa_plus")(**Q)
    cls = upstream_run(plus, "oaa_run")
    assert expected_code(plus) == json.loads((plus / "params.json").read_text())["code_digest"]
    # the classifier's code changes: its run and every run made from it are stale
    monkeypatch.setattr(type(get_stage("classifier")), "code", classmethod(lambda cls_: "changed"))
    assert expected_code(cls) != json.loads((cls / "params.json").read_text())["code_digest"]
    assert expected_code(plus) != json.loads((plus / "params.json").read_text())["code_digest"]


def test_metrics_refuse_nan(tmp_path):
    with pytest.raises(ValueError, match=r"\['bad'\] are not finite"):
        write_metrics(tmp_path, {"ok": 1.0, "bad": float("nan")})
    assert not (tmp_path / "metrics.json").exists()


def test_stage_lock_is_held_during_the_stage_and_released_after(tmp_path):
    from filelock import FileLock, Timeout

    @stage_entry
    def stage():
        run, _ = prepare_run("toy", {"x": 1}, run_dir=tmp_path / "r")
        with pytest.raises(Timeout):  # another writer (a second lock object) is kept out
            FileLock(str(run / ".lock")).acquire(timeout=0.1)
        return run

    run = stage()
    lk = FileLock(str(run / ".lock"))
    lk.acquire(timeout=0.1)  # released when the stage returned
    lk.release()


def test_files_get_the_ordinary_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        f = write_metrics(tmp_path, {"m": 1.0})
    finally:
        os.umask(old)
    assert stat.S_IMODE(f.stat().st_mode) == 0o644


def test_amr_identity_holds_no_path_auto_and_folder_are_one_run(quick_voc):
    from wsss_lib.stages.amr import run_amr_stage
    from wsss_lib.stages.classifier import run_classifier_stage

    up = run_classifier_stage(**Q)
    a = run_amr_stage(**Q)  # init_from "auto"
    b = run_amr_stage(init_from=str(up.resolve()), **Q)
    assert a == b
    params = json.loads((a / "params.json").read_text())["params"]
    assert params["init_run"] == run_identity(up) and "/" not in params["init_from"]


def test_pretrained_weights_that_are_missing_raise_before_any_folder(tmp_path, monkeypatch, quick_voc):
    from wsss_lib.models.weights import WeightsUnavailable

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("WSSS_RUNS", str(tmp_path / "runs"))
    with pytest.raises(WeightsUnavailable, match=r"vgg16-397923af.pth is not in .*torch/hub/checkpoints"):
        get_stage("classifier")(backbone="vgg16", **Q)
    assert not (tmp_path / "runs").exists()
    # pretrained=False is the explicit way to train from scratch: planned without weights
    assert get_stage("classifier").plan(backbone="vgg16", pretrained=False, **Q).params["weights"] == []


def test_cheap_checks_come_first_and_leave_no_folder(tmp_path, monkeypatch, small_voc):
    monkeypatch.setenv("WSSS_RUNS", str(tmp_path / "runs"))
    # a corrupt val image fails before training (the classifier reads val for its mAP)
    (small_voc / "JPEGImages" / "v000001.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=r"(?s)split 'val'.*v000001.jpg"):
        get_stage("classifier")(data_root=str(small_voc), **Q)
    assert not (tmp_path / "runs").exists()
    # a missing saliency folder fails before the upstream classifier is trained
    with pytest.raises(FileNotFoundError, match="saliency_root='/no/such/folder'"):
        get_stage("segmentation")(pseudo_params={"saliency_root": "/no/such/folder"}, **Q)
    assert not (tmp_path / "runs").exists()


def test_a_corrupt_torch_file_is_named(tmp_path, quick_voc):
    run = get_stage("classifier")(run_dir=str(tmp_path / "oaa"), **Q)
    (run / "attention" / "oaa_max.pt").write_bytes(b"truncated")
    with pytest.raises(ValueError, match=r"attention/oaa_max.pt is corrupt"):
        get_stage("oaa_plus")(oaa_run=str(run), **Q)
    ckpt = run / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    from wsss_lib.util.io import torch_load

    with pytest.raises(ValueError, match=r"checkpoint.pt cannot be read: it is corrupt"):
        torch_load(ckpt)


def _read_only(cmd: list[str], folder, env) -> subprocess.CompletedProcess:
    """Run ``cmd`` with ``folder`` read-only (root ignores permissions: a read-only bind mount in
    a user and mount namespace then)."""
    if os.geteuid() != 0:
        os.chmod(folder, 0o555)
        try:
            return subprocess.run(cmd, env=env, capture_output=True, text=True)
        finally:
            os.chmod(folder, 0o755)
    import shlex

    sh = f"mount --bind -o ro {folder} {folder} && exec {shlex.join(cmd)}"
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount --bind -o ro {folder} {folder}"],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no read-only mount here: {probe.stderr.decode()[:200]}")
    return subprocess.run(["unshare", "-rm", "sh", "-c", sh], env=env, capture_output=True, text=True)


def test_a_read_only_runs_folder_serves_finished_runs_and_names_itself(tmp_path, quick_voc):
    runs = tmp_path / "runs"
    env = {**os.environ, "WSSS_RUNS": str(runs)}
    code = ("import sys; from wsss_lib.stages import get_stage; "
            "print(get_stage('classifier')(quick=True, progress=False, seed=int(sys.argv[1])))")
    first = subprocess.run([sys.executable, "-c", code, "0"], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    again = _read_only([sys.executable, "-c", code, "0"], runs, env)  # finished: read, no lock needed
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == first.stdout.strip()
    new = _read_only([sys.executable, "-c", code, "1"], runs, env)  # a new run: one error naming the folder
    assert new.returncode != 0 and "RunsFolderError" in new.stderr and f"the runs folder {runs}" in new.stderr


def test_forced_quick_keeps_a_quick_profile_of_its_own(monkeypatch):
    from dataclasses import replace

    from wsss_lib.runs.profile import FULL, QUICK, resolve_profile

    monkeypatch.setenv("WSSS_QUICK", "1")
    own = replace(QUICK, pretrain=replace(QUICK.pretrain, task="regions"))
    assert resolve_profile(own) is own  # before: replaced by QUICK, its pretraining task silently dropped
    assert resolve_profile(FULL) is QUICK and resolve_profile(False) is QUICK
