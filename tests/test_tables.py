"""Tables as data: rows are stage calls whose runs are found by planned identity; a row never mixes
settings; each table states where its rows came from; the tables of the README and docs/ are the rendered ones."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from wsss_lib.runs.profile import QUICK
from wsss_lib.stages import get_stage
from wsss_lib.reporting.tables.core import Column, Row, SettingMismatch, Table, render, values
from wsss_lib.reporting.tables.oaa import OAA_TABLE

REPO = Path(__file__).resolve().parents[1]


def _result(stage: str, seed: int, metric: dict, given: dict, **params) -> dict:
    """One finished point of ``stage`` as results.collect reports it (its run planned, not made)."""
    plan = get_stage(stage).plan(seed=seed, quick=QUICK, progress=False, **params)
    return {"notebook": get_stage(stage).notebook, "run": plan.identity, "code": plan.code, "stale": False,
            **{f"p.{k}": v for k, v in given.items()},
            **{f"r.{k}": v for k, v in plan.params.items() if not isinstance(v, (list, dict))}, **metric}


def test_rows_are_the_runs_their_call_resolves_to(quick_voc):
    df = pd.DataFrame([
        _result("classifier", 0, {"cam_miou": 0.30, "oaa_ave_miou": 0.3, "oaa_max_miou": 0.3}, {"seed": 0}),
        # a grid that wrote the default out: the same setting, the same row
        _result("classifier", 1, {"cam_miou": 0.32, "oaa_ave_miou": 0.3, "oaa_max_miou": 0.3},
                {"seed": 1, "gate": "paper"}, gate="paper"),
        # another setting (more epochs): never in the default row
        _result("classifier", 2, {"cam_miou": 0.90, "oaa_ave_miou": 0.9, "oaa_max_miou": 0.9},
                {"seed": 2, "epochs": 8}, epochs=8)])
    t = render(OAA_TABLE, df, QUICK)
    assert t.frame.loc["CAM", "n"] == 2 and t.frame.loc["CAM", "values"] == "0.300, 0.320"
    assert len(t.runs) == 2
    # the row of the other setting is its own call
    eight = render(Table("x", (Row("CAM, 8 epochs", "classifier", {"epochs": 8}, "cam_miou"),)), df, QUICK)
    assert eight.frame.loc["CAM, 8 epochs", "values"] == "0.900"


def test_a_table_refuses_to_average_runs_of_different_epochs(quick_voc):
    rows = pd.DataFrame([
        _result("classifier", 0, {"cam_miou": 0.3}, {"seed": 0}),
        _result("classifier", 1, {"cam_miou": 0.5}, {"seed": 1, "epochs": 8}, epochs=8)])
    with pytest.raises(SettingMismatch, match=r"runs of different settings \(epochs: 6, 8\)"):
        values(rows, "cam_miou", "a hand-made selection")
    assert values(rows.iloc[:1], "cam_miou") == [0.3]


def test_columns_merge_parameters_into_every_row(quick_voc):
    df = pd.DataFrame([_result("classifier", 0, {"cam_miou": 0.3}, {}),
                       _result("classifier", 0, {"cam_miou": 0.4}, {"pretrained": False}, pretrained=False)])
    t = render(Table("s", (Row("CAM", "classifier", {}, "cam_miou"),),
                     (Column("pretrained", {}), Column("scratch", {"pretrained": False}))), df, QUICK)
    assert t.frame.loc["CAM"].tolist()[:2] == ["0.300 (n=1)", "0.400 (n=1)"]


def test_readme_tables_are_the_rendered_tables():
    """Every table block of every synced page (the README and the docs pages that hold blocks) is its
    rendered file; the README shows the headline tables, and every block is on a page the main job syncs."""
    from wsss_lib.reporting.tables.readme import page_blocks, readme_blocks, synced_pages

    readme = readme_blocks(REPO / "README.md")
    assert {"reports/oaa_plus_table.md", "reports/amr_table.md", "reports/segmentation_table.md"} <= set(readme)
    pages = synced_pages(REPO)
    assert REPO / "README.md" in pages and REPO / "docs" / "results.md" in pages
    for page in pages:
        for f, body in page_blocks(page).items():
            assert (REPO / f).is_file(), f"{page.relative_to(REPO)} has a block of {f}, which does not exist"
            assert body == (REPO / f).read_text(), f"{page.relative_to(REPO)}'s block of {f} differs from the rendered table"
    # a block on a page the main job does not sync would go stale unseen
    synced = set(pages)
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        assert page in synced or not page_blocks(page), page


def test_syncing_fills_every_page_and_leaves_the_rest(tmp_path):
    from wsss_lib.reporting.tables.readme import page_blocks, sync_docs

    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "t.md").write_text("| a |\n|---|\n| 1 |\n")
    (tmp_path / "docs").mkdir()
    block = "<!-- table: reports/t.md -->\nold\n<!-- /table -->\n"
    (tmp_path / "README.md").write_text("# r\n\n" + block)
    (tmp_path / "docs" / "results.md").write_text("text\n" + block + "<!-- table: reports/missing.md -->\nkept\n<!-- /table -->\n")
    (tmp_path / "docs" / "other.md").write_text("no blocks\n")
    copied = sync_docs(tmp_path)
    assert copied == {"README.md": ["reports/t.md"], "docs/results.md": ["reports/t.md"]}
    for page in ("README.md", "docs/results.md"):
        assert page_blocks(tmp_path / page)["reports/t.md"] == "| a |\n|---|\n| 1 |\n"
    assert page_blocks(tmp_path / "docs" / "results.md")["reports/missing.md"] == "kept\n"  # no file: left as it is
    assert (tmp_path / "docs" / "other.md").read_text() == "no blocks\n"


def test_every_table_says_what_it_shows_and_how_to_read_it():
    from wsss_lib.reporting.tables import ALL_TABLES, describe

    for name in (*ALL_TABLES, "oaa_per_class"):
        title, note = describe(name)
        assert title and title != name and note, name  # a heading in words, not the file's code name


def test_one_run_has_no_spread():
    from wsss_lib.reporting.tables.core import _mean_std_cells, mean_std

    assert mean_std([0.3481]) == "0.348" and mean_std([0.2, 0.4]) == "0.300 ± 0.141" and mean_std([]) == "-"
    cells = _mean_std_cells("CAM mIoU", [0.5])
    assert cells["n"] == 1 and pd.isna(cells["CAM mIoU std"])  # shown as "-", not as a measured 0.000


def test_an_ordering_is_claimed_only_where_every_seed_agrees(quick_voc):
    from wsss_lib.reporting.tables.core import differences, paired_verdict

    assert paired_verdict([0.01, 0.002, 0.03]) == "above in every seed"
    assert paired_verdict([-0.01, -0.002, -0.03]) == "below in every seed"
    assert paired_verdict([0.05, 0.04, -0.001]) == "not ordered"  # a large mean does not outvote a seed
    assert paired_verdict([0.01, 0.0, 0.02]) == "not ordered" and paired_verdict([0.1, 0.2]) == "too few seeds"
    # CAM 0.30/0.31/0.32; OAA-MAX above in seeds 0, 1 and below in seed 2; OAA-AVE above in all
    df = pd.DataFrame([_result("classifier", s, {"cam_miou": c, "oaa_max_miou": m, "oaa_ave_miou": a}, {"seed": s})
                       for s, c, m, a in ((0, 0.30, 0.35, 0.31), (1, 0.31, 0.36, 0.32), (2, 0.32, 0.30, 0.33))])
    d = differences(OAA_TABLE, df, QUICK)
    assert d.index.name == "against CAM" and d.loc["OAA-MAX", "differences"] == "+0.050, +0.050, -0.020"
    assert d.loc["OAA-MAX", "ordering"] == "not ordered" and d.loc["OAA-AVE", "ordering"] == "above in every seed"
    assert d.loc["OAA-AVE", "mean ± std"] == "0.010 ± 0.000"


def test_the_setting_page_shows_each_settings_health(quick_voc):
    """The setting comparison carries the health figures of its runs (never-active head units, empty
    maps), per setting, so a collapsed setting shows as such next to its mIoU."""
    from wsss_lib.reporting.tables.oaa import SETTING_DEAD_UNITS, SETTING_EMPTY_MAPS

    health = {"cam_miou": 0.3, "oaa_ave_miou": 0.3, "oaa_max_miou": 0.3, "empty_maps_oaa_ave": 0.2,
              "empty_maps_oaa_max": 0.2}
    df = pd.DataFrame([
        _result("classifier", 0, {**health, "dead_head_units": 0.0, "empty_maps_cam": 0.1}, {"data_root": "embedded:v1"},
                data_root="embedded:v1"),
        _result("classifier", 0, {**health, "dead_head_units": 0.5, "empty_maps_cam": 1.0},
                {"data_root": "embedded:v1", "pretrained": False}, data_root="embedded:v1", pretrained=False)])
    dead = render(SETTING_DEAD_UNITS, df, QUICK).frame
    assert dead.loc["classifier (CAM, OAA-AVE, OAA-MAX)", "v1, pretrained"] == "0.000 (n=1)"
    assert dead.loc["classifier (CAM, OAA-AVE, OAA-MAX)", "v1, scratch"] == "0.500 (n=1)"
    empty = render(SETTING_EMPTY_MAPS, df, QUICK).frame
    assert empty.loc["CAM", "v1, scratch"] == "1.000 (n=1)" and empty.loc["OAA-MAX", "v1, pretrained"] == "0.200 (n=1)"
