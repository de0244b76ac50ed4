"""The batch runner: grid expansion, point identity, unknown names refused everywhere, failures,
kill + resume, kill -9 taking the workers along, concurrent batches, upstream sharing, stale points,
a read-only runs folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wsss_lib.experiments.batch import Grid, GridError, load_grids, main, plan, plan_point, point_id, point_status

TOY = str(Path(__file__).parent / "data" / "toy_point.ipynb")


@pytest.fixture
def runs(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "runs"
    monkeypatch.setenv("WSSS_RUNS", str(root))
    return root


def _executions(log: Path) -> list[int]:
    return [int(v) for v in log.read_text().split()] if log.exists() else []


def test_grid_product_and_zip():
    g = Grid(TOY, {"sleep": 0}, {"x": [1, 2, 3], "fail": [False, True, False], "seed": [0, 1]}, [["x", "fail"]])
    pts = g.points()
    assert len(pts) == 6  # 3 zipped (x, fail) pairs x 2 seeds
    assert {(p["x"], p["fail"]) for p in pts} == {(1, False), (2, True), (3, False)}
    assert all(p["sleep"] == 0 for p in pts)
    assert len(Grid(TOY, {}, {"x": [1, 2], "seed": [0, 1, 2]}).points()) == 6  # plain product
    assert Grid(TOY, {"x": 5}).points() == [{"x": 5}]  # no axes: one point
    with pytest.raises(GridError, match="equal lengths"):
        Grid(TOY, {}, {"x": [1, 2], "fail": [True]}, [["x", "fail"]])
    with pytest.raises(GridError, match="'y' is not in 'grid'"):
        Grid(TOY, {}, {"x": [1, 2]}, [["x", "y"]])
    with pytest.raises(GridError, match="notebook 'nope.ipynb' not found"):
        Grid("nope.ipynb")


def test_grid_files_and_their_errors(tmp_path):
    f = tmp_path / "g.yaml"
    f.write_text(f"name: toy\nnotebook: {TOY}\nparams: {{sleep: 0}}\ngrid:\n  x: [1, 2]\n")
    (g,) = load_grids(f)
    assert g.name == "toy" and len(g.points()) == 2
    f.write_text(f"notebook: {TOY}\ngrid:\n  x: 3\n")
    with pytest.raises(GridError, match=r"g.yaml: .*axis 'x' must be a non-empty list"):
        load_grids(f)
    f.write_text(f"notebook: {TOY}\naxes:\n  x: [1]\n")
    with pytest.raises(GridError, match=r"g.yaml: unknown key 'axes'"):
        load_grids(f)
    f.write_text("notebook: [unclosed\n")
    with pytest.raises(GridError, match="not valid YAML"):
        load_grids(f)
    # the shipped grid files all parse and name existing notebooks
    shipped = sorted((Path(__file__).parents[1] / "notebooks" / "grids").glob("*.yaml"))
    assert shipped
    for gf in shipped:
        assert all(g.points() for g in load_grids(gf)), gf


def test_failing_point_is_recorded_others_finish_exit_nonzero(runs, tmp_path, capsys):
    log = tmp_path / "exec.log"
    argv = ["--notebook", TOY, "-p", "x", "1", "2", "3", "-p", "fail", "false", "true", "false", "--zip", "x,fail",
            "-p", "log", str(log)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "FAILED" in err and "x=2" in err
    pts = plan([Grid(TOY, {"log": str(log)}, {"x": [1, 2, 3], "fail": [False, True, False]}, [["x", "fail"]])])
    status = {p.params["x"]: point_status(p.folder) for p in pts}
    assert status == {1: "finished", 2: "failed", 3: "finished"}
    bad = next(p.folder for p in pts if p.params["x"] == 2)
    assert "fails on purpose" in (bad / "error.txt").read_text()
    assert (bad / "toy_point.ipynb").exists()  # the executed notebook is kept
    assert json.loads((next(p.folder for p in pts if p.params["x"] == 3) / "metrics.json").read_text()) == {"y": 6.0}
    assert sorted(_executions(log)) == [1, 2, 3]
    # a second batch skips the finished points and runs the failed one again
    assert main(argv) == 1
    assert sorted(_executions(log)) == [1, 2, 2, 3]
    assert main(argv + ["--skip-failed"]) == 1
    assert sorted(_executions(log)) == [1, 2, 2, 3]


def _batch_cmd(grid_file: Path) -> list[str]:
    return [sys.executable, "-m", "wsss_lib.experiments.batch", str(grid_file)]


def test_killed_batch_resumes_without_redoing_finished_points(runs, tmp_path):
    log = tmp_path / "exec.log"
    gf = tmp_path / "slow.yaml"
    gf.write_text(f"notebook: {TOY}\nparams: {{sleep: 2, log: {log}}}\ngrid:\n  x: [1, 2, 3]\n")
    proc = subprocess.Popen(_batch_cmd(gf), start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=os.environ.copy())
    pts = plan(load_grids(gf))
    deadline = time.time() + 120
    while time.time() < deadline and point_status(pts[0].folder) != "finished":
        time.sleep(0.2)
    assert point_status(pts[0].folder) == "finished"
    while time.time() < deadline and len(_executions(log)) < 2:  # the second point has started
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # the batch and its kernels, mid-point
    proc.wait()
    assert point_status(pts[1].folder) == "interrupted"  # its batch is dead: recognizably unfinished, to resume
    assert not (pts[1].folder / "metrics.json").exists()
    assert subprocess.run(_batch_cmd(gf), env=os.environ.copy(), capture_output=True).returncode == 0
    assert [point_status(p.folder) for p in pts] == ["finished"] * 3
    assert sorted(_executions(log)) == [1, 2, 2, 3]  # point 1 not redone; point 2 ran again
    assert json.loads((pts[1].folder / "point.json").read_text())["resumed"] is True
    leftovers = [f for p in pts for f in p.folder.iterdir() if f.name.endswith(".partial.ipynb")]
    assert not leftovers


def test_concurrent_batches_on_overlapping_grids_run_each_point_once(runs, tmp_path):
    log = tmp_path / "exec.log"
    files = []
    for name, xs in (("a", "[1, 2, 3]"), ("b", "[3, 2, 4]")):
        f = tmp_path / f"{name}.yaml"
        f.write_text(f"notebook: {TOY}\nparams: {{sleep: 1, log: {log}}}\ngrid:\n  x: {xs}\n")
        files.append(f)
    procs = [subprocess.Popen(_batch_cmd(f), env=os.environ.copy(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for f in files]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    assert sorted(_executions(log)) == [1, 2, 3, 4]


@pytest.mark.slow
def test_xi_grid_shares_one_amr_run_and_one_classifier_run(runs, quick_voc):
    argv = ["--notebook", "04_train_amr.ipynb", "-p", "xi_main", "0.3", "0.5", "0.7", "-p", "quick", "true",
            "-p", "variant", "AMR"]
    assert main(argv) == 0
    assert len(list(runs.glob("amr-*"))) == 1 and len(list(runs.glob("classifier-*"))) == 1
    points = sorted((runs / "batch").iterdir())
    assert len(points) == 3
    ms = [json.loads((p / "metrics.json").read_text()) for p in points]
    assert sorted(m["xi_main"] for m in ms) == [0.3, 0.5, 0.7]
    for m in ms:
        assert m["amr_miou_at_xi_main"] == m[f"amr_xi{m['xi_main']:g}_miou"]
        assert json.loads((points[0] / "run.json").read_text())["run"].startswith("amr-")


def test_results_collect_and_mean_std(runs, tmp_path):
    from wsss_lib.experiments.results import collect, mean_std

    argv = ["--notebook", TOY, "-p", "x", "1", "2", "3", "-p", "seed", "0", "1", "-p", "fail", "false"]
    assert main(argv) == 0
    assert main(["--notebook", TOY, "-p", "x", "9", "-p", "fail", "true"]) == 1
    df = collect()
    assert len(df) == 6 and set(df["p.x"]) == {1, 2, 3}  # the failed point is left out
    assert (df["y"] == 2 * df["p.x"]).all()
    assert len(collect(include_unfinished=True)) == 7
    t = mean_std(df, ["p.x"], ["y"])
    assert t.loc[2, ("y", "mean")] == 4.0 and t.loc[2, ("y", "std")] == 0.0 and t.loc[2, ("y", "n")] == 2
    with pytest.raises(KeyError, match="p.nope"):
        mean_std(df, ["p.nope"], ["y"])


def test_submitit_local_executor_uses_the_same_point_folders_and_semantics(runs, tmp_path):
    from wsss_lib.experiments.batch import ClusterOptions, run_batch

    log = tmp_path / "exec.log"
    grid = Grid(TOY, {"log": str(log)}, {"x": [1, 2], "fail": [False, True]}, [["x", "fail"]], name="toy")
    df = run_batch([grid], jobs=2, progress=False, executor="submitit-local",
                   cluster=ClusterOptions(time_min=5, poll_seconds=0.2))
    folders = [p.folder for p in plan([grid])]  # the local runner's folders: same hashing
    assert [Path(f) for f in df["folder"]] == folders
    assert df["status"].tolist() == ["finished", "failed"]
    good, bad = folders
    assert json.loads((good / "metrics.json").read_text()) == {"y": 2.0}
    assert "fails on purpose" in (bad / "error.txt").read_text() and point_status(bad) == "failed"
    for f in folders:  # the job id and its log files are in the point's folder
        job = json.loads((f / "job.json").read_text())
        assert job["executor"] == "submitit-local" and job["job_id"]
        assert Path(job["stdout"]).is_file() and Path(job["stdout"]).is_relative_to(f)
    # the local runner then skips the finished point and runs the failed one again
    df2 = run_batch([grid], jobs=1, progress=False)
    assert df2["status"].tolist() == ["cached", "failed"] and sorted(_executions(log)) == [1, 2, 2]


# -- point identity ------------------------------------------------------------------------------------
def test_a_default_written_out_is_the_same_point(quick_voc):
    assert plan_point(TOY, {"x": 1}).identity == plan_point(TOY, {}).identity  # the toy notebook's default
    a = plan_point("01_train_classifier_oaa.ipynb", {"seed": 0})
    b = plan_point("01_train_classifier_oaa.ipynb", {"seed": 0, "gate": "paper", "epochs": None, "backbone": "tiny"})
    assert a.identity == b.identity and a.run == b.run
    c = plan_point("01_train_classifier_oaa.ipynb", {"seed": 0, "epochs": 8})
    assert point_id(c.identity) != point_id(a.identity)
    # notebook 05: the pseudo-label parameters written out or left at their defaults: one point
    d = plan_point("05_pseudo_labels_segmentation.ipynb", {"source": "oaa_max"})
    e = plan_point("05_pseudo_labels_segmentation.ipynb", {"source": "oaa_max", "mode": "saliency", "conflict": 0.9})
    assert d.identity == e.identity


def test_a_quick_point_is_never_the_full_point(monkeypatch, quick_voc):
    import dataclasses

    import wsss_lib.runs.profile as P

    # a "full" profile that differs from quick by its name only: the name alone separates the points
    monkeypatch.setattr(P, "FULL", dataclasses.replace(P.QUICK, name="full"))
    quick = plan_point("01_train_classifier_oaa.ipynb", {"seed": 3})
    monkeypatch.delenv("WSSS_QUICK")
    full = plan_point("01_train_classifier_oaa.ipynb", {"seed": 3})
    assert point_id(full.identity) != point_id(quick.identity) and full.run != quick.run
    assert plan_point("01_train_classifier_oaa.ipynb", {"seed": 3, "quick": True}).run == quick.run


def test_changing_a_default_changes_the_point(monkeypatch, quick_voc):
    from test_runs import set_default

    from wsss_lib.stages.classifier import ClassifierConfig

    a = plan_point("03_train_oaa_plus.ipynb", {"seed": 0})
    set_default(monkeypatch, ClassifierConfig, "gate", "all")  # the upstream classifier's default
    b = plan_point("03_train_oaa_plus.ipynb", {"seed": 0})
    assert point_id(a.identity) != point_id(b.identity)


# -- unknown names, bad arguments ------------------------------------------------------------------------
def test_unknown_parameters_are_refused_by_the_batch_runner(runs, tmp_path, capsys):
    gf = tmp_path / "typo.yaml"
    gf.write_text("notebook: 01_train_classifier_oaa.ipynb\ngrid:\n  sed: [0, 1]\n")
    for argv in ([str(gf)], [str(gf), "--dry-run"], ["--notebook", "01_train_classifier_oaa.ipynb", "-p", "sed", "0"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "unknown parameter(s) ['sed'] for notebook 01_train_classifier_oaa.ipynb" in err and "'seed'" in err
    assert not runs.exists()  # nothing ran, no folder
    with pytest.raises(SystemExit):
        main(["--notebook", TOY, "-p", "x", "1", "-j", "0"])
    assert "expected an integer >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--notebook", TOY, "-p", "x", "1", "-j", "-3"])


def test_unknown_parameters_are_refused_by_the_launcher_and_a_papermilled_notebook(runs, tmp_path):
    import papermill as pm

    from wsss_lib.experiments.kernels import execute_notebook

    res = subprocess.run([sys.executable, "-m", "wsss_lib.experiments.launch", "classifier", "sed=0"], capture_output=True, text=True)
    assert res.returncode == 2 and "unknown parameter(s) ['sed'] for stage classifier" in res.stderr
    nb = Path(__file__).parents[1] / "notebooks" / "01_train_classifier_oaa.ipynb"
    with pytest.raises(pm.PapermillExecutionError, match=r"unknown parameter\(s\) \['sed'\] for notebook 01"):
        execute_notebook(nb, tmp_path / "out.ipynb", parameters={"sed": 0}, cwd=nb.parent)
    assert not runs.exists()  # it failed in the first cell after the parameters


# -- faults ------------------------------------------------------------------------------------------------
def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return not any(line.startswith("State:") and "Z" in line for line in f)
    except FileNotFoundError:
        return False


def test_kill_9_of_a_parallel_batch_takes_its_workers_and_kernels_along(runs, tmp_path):
    import psutil

    gf = tmp_path / "slow.yaml"
    gf.write_text(f"notebook: {TOY}\nparams: {{sleep: 60}}\ngrid:\n  x: [1, 2]\n")
    proc = subprocess.Popen([*_batch_cmd(gf), "-j", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=os.environ.copy())
    pts = plan(load_grids(gf))
    deadline = time.time() + 120
    while time.time() < deadline and not all(point_status(p.folder) == "running" for p in pts):
        time.sleep(0.2)
    workers = [json.loads((p.folder / "point.json").read_text())["pid"] for p in pts]

    # each worker has started its notebook's kernel (under load this can take many seconds)
    deadline = time.time() + 120
    while time.time() < deadline and not all(psutil.Process(w).children(recursive=True) for w in workers):
        time.sleep(0.2)
    family = set(workers) | {c.pid for w in workers for c in psutil.Process(w).children(recursive=True)}
    assert len(family) >= 4  # two workers, two kernels
    proc.kill()  # kill -9 of the batch process alone (not its process group)
    proc.wait()
    deadline = time.time() + 20
    while time.time() < deadline and any(_alive(p) for p in family):
        time.sleep(0.5)
    assert not [p for p in family if _alive(p)]


def test_stale_points_are_listed_and_run_again_or_kept(runs, tmp_path, capsys):
    log = tmp_path / "exec.log"
    argv = ["--notebook", TOY, "-p", "x", "1", "-p", "log", str(log)]
    assert main(argv) == 0
    (pt,) = plan([Grid(TOY, {"log": str(log)}, {"x": [1]})])
    info = json.loads((pt.folder / "point.json").read_text())
    info["code"] = "made-by-old-code"
    (pt.folder / "point.json").write_text(json.dumps(info))
    assert point_status(pt.folder, pt.code) == "stale"
    capsys.readouterr()
    assert main(argv + ["--keep-stale"]) == 0  # kept, loudly
    err = capsys.readouterr().err
    assert "finished by other code: KEPT" in err and "stale: toy_point.ipynb" in err
    assert _executions(log) == [1]
    assert main(argv) == 0  # the default: run again
    assert "running them again" in capsys.readouterr().err
    assert _executions(log) == [1, 1] and point_status(pt.folder, pt.code) == "finished"


def test_a_read_only_runs_folder_gives_one_named_error(runs, tmp_path):
    from test_runs import _read_only

    env = {**os.environ, "WSSS_RUNS": str(runs)}
    done = subprocess.run([*_batch_cmd_p(TOY, "1")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    again = _read_only(_batch_cmd_p(TOY, "1"), runs, env)  # finished: read without a lock
    assert again.returncode == 0, again.stderr
    new = _read_only(_batch_cmd_p(TOY, "2"), runs, env)
    assert new.returncode == 2 and new.stderr.count("error:") == 1 and f"the runs folder {runs} is not writable" in new.stderr
    assert "Traceback" not in new.stderr


def _batch_cmd_p(notebook: str, x: str) -> list[str]:
    return [sys.executable, "-m", "wsss_lib.experiments.batch", "--notebook", notebook, "-p", "x", x]


def test_a_batch_prints_no_kernel_transport_warning(runs, tmp_path):
    res = subprocess.run([sys.executable, "-m", "wsss_lib.experiments.batch", "--notebook", TOY, "-p", "x", "1", "2"],
                         capture_output=True, text=True, env=os.environ.copy(), timeout=300)
    assert res.returncode == 0 and "without encryption" not in res.stderr + res.stdout
