"""The main job (README command 1) in quick mode on a small grid list: the batch runner executes
the points, notebook 07 renders every table and figure from the results, the seed-0 notebooks are
exported as HTML, and a second invocation reuses every finished point."""

import json
import re

from wsss_lib.experiments.main import main

GRIDS = """
grids:
  - name: fusion
    notebook: 01_train_classifier_oaa.ipynb
    grid: {seed: [0]}
  - name: evolution
    notebook: 02_attention_evolution.ipynb
    grid: {seed: [0]}
  - name: loss
    notebook: 03_train_oaa_plus.ipynb
    grid: {loss: [mce, hl], seed: [0]}
  - name: amr
    notebook: 04_train_amr.ipynb
    grid: {variant: [AMR+both], seed: [0]}
  - name: segmentation
    notebook: 05_pseudo_labels_segmentation.ipynb
    params: {source: oaa_plus, attention_params: {loss: hl}, mode: saliency, seed: 0}
    grid: {fraction: [0.5, 1.0]}
  - name: segmentation_main
    notebook: 05_pseudo_labels_segmentation.ipynb
    params: {source: oaa_plus, mode: saliency, seed: 0, fraction: 1.0, attention_params: {loss: hl}}
    grid: {conflict: [0.9]}
"""


def test_quick_main_job_renders_every_report(tmp_path, quick_voc, monkeypatch):
    monkeypatch.setenv("WSSS_RUNS", str(tmp_path / "runs"))
    grid = tmp_path / "main.yaml"
    grid.write_text(GRIDS)
    reports = tmp_path / "reports"
    assert main(["--quick", "--reports", str(reports), "-j", "1", "--grids", str(grid)]) == 0
    for name in ("benchmark.md", "benchmark_samples.png", "oaa.md", "oaa_table.md", "oaa_table.html",
                 "oaa_threshold_curves.png", "oaa_sources.png", "attention_evolution.png", "oaa_plus_table.md",
                 "oaa_plus_sources.png", "amr_table.md", "amr_xi_table.md", "amr_xi_curve.png", "environment.json",
                 "timings.md", "index.md", "notebooks/07_results_tables.html", "segmentation.md",
                 "segmentation_table.md", "fraction_table.md", "segmentation.png", "benchmark_saliency.png"):
        assert (reports / name).exists(), name
    table = (reports / "oaa_plus_table.md").read_text()
    for row in ("CAM", "OAA-AVE", "OAA-MAX", "OAA+ (MCE)", "OAA+ (HL)", "59.6"):
        assert row in table
    assert "AMR+both (xi 0.5)" in (reports / "amr_table.md").read_text()
    # every row against the CAM, paired by seed: one seed supports no ordering
    diffs = (reports / "oaa_plus_table_differences.md").read_text()
    assert "against CAM" in diffs and "OAA+ (HL)" in diffs and "too few seeds" in diffs
    assert diffs.split("\n\n")[0] in (reports / "oaa_plus.md").read_text()
    zones = (reports / "oaa_zones.md").read_text()  # where OAA-MAX's extra pixels land
    assert "rest of body" in zones and "v1, pretrained (seed 0)" in zones and zones.split("\n\n")[0] in (reports / "oaa.md").read_text()
    assert "Measured under a trained classifier" in (reports / "benchmark.md").read_text()
    assert "max_f_measure" in (reports / "benchmark.md").read_text()
    assert "OAA+ (HL)" in (reports / "segmentation_table.md").read_text()
    fractions = (reports / "fraction_table.md").read_text()
    assert "50%" in fractions and "100%" in fractions and "59.6" in fractions
    html = sorted(p.name for p in (reports / "notebooks").glob("*.html"))
    assert html == ["01_train_classifier_oaa.html", "02_attention_evolution.html", "03_train_oaa_plus.html",
                    "04_train_amr.html", "05_pseudo_labels_segmentation.html", "07_results_tables.html"]
    assert all((reports / "notebooks" / h).stat().st_size < 2 * 2**20 for h in html)
    timings = (reports / "timings.md").read_text()
    # the last grid writes defaults out (fraction, conflict): the same point as segmentation's 100%
    assert "## Batch summary" in timings and len(re.findall(r"\|\s*finished\s*\|", timings)) == 7
    # one classifier run (the default setting) serves every point
    assert len(list((tmp_path / "runs").glob("classifier-*"))) == 1
    assert "profile `quick`" in (reports / "oaa_table.md").read_text()
    # a second invocation reuses every point (no training) and renders the same tables
    before = (reports / "amr_table.md").read_text()
    assert main(["--quick", "--reports", str(reports), "-j", "1", "--grids", str(grid)]) == 0
    assert (reports / "amr_table.md").read_text() == before
    assert len(re.findall(r"\|\s*cached\s*\|", (reports / "timings.md").read_text())) == 7
    nb = json.loads((tmp_path / "runs" / "results" / "07_results_tables.ipynb").read_text())
    assert any("injected-parameters" in c["metadata"].get("tags", []) for c in nb["cells"])
