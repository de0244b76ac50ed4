"""Candidate benchmark settings, measured with the plain CAM classifier only."""

import json
from pathlib import Path

import pytest

from wsss_lib.experiments import candidates


def test_unknown_candidate_is_named_before_anything_runs(capsys):
    with pytest.raises(SystemExit):
        candidates.main(["--only", "v9", "--quick"])
    assert "unknown candidate(s) ['v9']; known: ['v1', 'parts2', 'mini-s4-w16-shapes', 'mini-s4-w16-regions', 'mini-s4-w32-regions']" in capsys.readouterr().err


def test_a_quick_candidate_is_measured_without_any_oaa_result(tmp_path):
    assert candidates.main(["--only", "mini-s4-w16-regions", "--quick", "--runs", str(tmp_path / "runs"),
                            "--out", str(tmp_path / "out")]) == 0
    res = json.loads((tmp_path / "out" / "benchmark_candidates.json").read_text())["results"][0]
    assert res["output_stride"] == 4 and res["pretrain_task"] == "regions" and res["variant"] == "mini"
    assert res["width"] == 16
    assert set(res["probe_map"]) == {"pretrained", "random"} and len(res["epoch_cam_miou"]) == 6  # the quick classifier's epochs
    assert not [k for k in res["metrics"] if k.startswith("oaa")]
    assert not Path(res["run"]).is_absolute()  # the report does not depend on where the checkout lives
    run = tmp_path / "runs" / "mini-s4-w16-regions"
    weights = json.loads((run / "params.json").read_text())["params"]["weights"]
    assert weights[0]["spec"] == res["pretrain_digest"]  # the run used the candidate's pretraining task
    assert sorted(p.name for p in (run / "attention").iterdir()) == ["cam.pt"]  # no OAA map was made
    md = (tmp_path / "out" / "benchmark_candidates.md").read_text()
    assert "VOC 2012" in md and "mini-s4-w16-regions" in md


def test_the_benchmark_page_shows_the_candidates_and_the_decision(tmp_path):
    from wsss_lib.reporting.benchmark_page import candidates_section

    assert candidates_section(tmp_path) == ""  # nothing measured yet: nothing shown
    (tmp_path / "benchmark_candidates.md").write_text("| setting |\n|---|\n| mini |\n")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "benchmark.md").write_text("Chosen: mini.\n")
    text = candidates_section(tmp_path)
    assert "| mini |" in text and text.rstrip().endswith("Chosen: mini.") and "accumulate=False" in text
