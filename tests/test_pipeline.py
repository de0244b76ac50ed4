"""The main job (README command 1) in quick mode: every stage, every table and figure, and the
notebooks executed through papermill into the run folders."""

import json

from wsss_lib.pipeline import main


def test_quick_pipeline_writes_every_report(tmp_path, quick_voc, monkeypatch):
    monkeypatch.setenv("WSSS_RUNS", str(tmp_path / "runs"))
    reports = tmp_path / "reports"
    assert main(["--quick", "--reports", str(reports)]) == 0
    for name in ("benchmark.md", "benchmark_samples.png", "oaa.md", "oaa_table.md", "oaa_table.html",
                 "oaa_threshold_curves.png", "attention_evolution.png", "oaa_plus_table.md",
                 "amr_table.md", "amr_xi_table.md", "amr_xi_curve.png", "environment.json"):
        assert (reports / name).exists(), name
    table = (reports / "oaa_plus_table.md").read_text()
    for row in ("CAM", "OAA-AVE", "OAA-MAX", "OAA+ (MCE)", "OAA+ (HL)"):
        assert row in table
    assert "Measured under a trained classifier" in (reports / "benchmark.md").read_text()
    executed = sorted(p.name for p in (tmp_path / "runs").rglob("0*.ipynb"))
    assert executed == ["01_train_classifier_oaa.ipynb", "02_attention_evolution.ipynb",
                        "03_train_oaa_plus.ipynb", "04_train_amr.ipynb"]
    nb = json.loads(next((tmp_path / "runs").rglob("01_train_classifier_oaa.ipynb")).read_text())
    assert any("injected-parameters" in c["metadata"].get("tags", []) for c in nb["cells"])
    # a second invocation reuses every finished run (no training): same tables
    before = (reports / "amr_table.md").read_text()
    assert main(["--quick", "--reports", str(reports), "--no-notebooks"]) == 0
    assert (reports / "amr_table.md").read_text() == before
