"""Run identity: parameters alone (no machine paths), stale-code warnings, upstream lookup, locks."""

import json
import shutil

import pytest

from wsss_lib.runs import (StaleRunWarning, code_digest, data_identity, find_run, params_hash, prepare_run,
                           run_identity, stage_entry, upstream_run, write_metrics)


def test_identity_ignores_where_the_data_and_runs_live(tmp_path, quick_voc, monkeypatch):
    copy = tmp_path / "elsewhere" / "voc"
    shutil.copytree(quick_voc, copy)
    assert data_identity(copy) == data_identity(quick_voc) and data_identity(copy).startswith("embedded:")
    a = {"data_root": str(quick_voc), "data": data_identity(quick_voc), "seed": 0}
    b = {"data_root": str(copy), "data": data_identity(copy), "seed": 0}
    assert params_hash(a) == params_hash(b)
    monkeypatch.setenv("WSSS_RUNS", str(tmp_path / "runs1"))
    up = prepare_run("oaa", a)
    write_metrics(up, {"m": 1.0})
    down = prepare_run("amr-AMR", {"init_run": run_identity(up), "seed": 0}, upstream={"init_run": up})
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


def test_a_run_made_by_other_code_is_reused_loudly(tmp_path, capsys):
    run = prepare_run("oaa", {"seed": 1}, tmp_path / "r")
    assert json.loads((run / "params.json").read_text())["code_digest"] == code_digest()
    write_metrics(run, {"m": 1.0})
    info = json.loads((run / "params.json").read_text())
    info["code_digest"] = "000000000000"
    (run / "params.json").write_text(json.dumps(info))
    with pytest.warns(StaleRunWarning, match="made by other wsss_lib code"):
        prepare_run("oaa", {"seed": 1}, tmp_path / "r")
    assert "reusing its results" in capsys.readouterr().err


def test_metrics_refuse_nan(tmp_path):
    with pytest.raises(ValueError, match=r"\['bad'\] are not finite"):
        write_metrics(tmp_path, {"ok": 1.0, "bad": float("nan")})
    assert not (tmp_path / "metrics.json").exists()


def test_stage_lock_is_held_during_the_stage_and_released_after(tmp_path):
    from filelock import FileLock, Timeout

    @stage_entry
    def stage():
        run = prepare_run("toy", {"x": 1}, tmp_path / "r")
        with pytest.raises(Timeout):  # another writer (a second lock object) is kept out
            FileLock(str(run / ".lock")).acquire(timeout=0.1)
        return run

    run = stage()
    lk = FileLock(str(run / ".lock"))
    lk.acquire(timeout=0.1)  # released when the stage returned
    lk.release()


def test_amr_identity_holds_no_path_auto_and_folder_are_one_run(quick_voc):
    from wsss_lib.stages.amr import run_amr_stage
    from wsss_lib.stages.classifier import run_classifier_stage

    up = run_classifier_stage(quick=True, progress=False)
    a = run_amr_stage(quick=True, progress=False)  # init_from "auto"
    b = run_amr_stage(quick=True, progress=False, init_from=str(up.resolve()))
    assert a == b
    params = json.loads((a / "params.json").read_text())["params"]
    assert params["init_run"] == run_identity(up) and "/" not in params["init_from"]
