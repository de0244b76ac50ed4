"""The repeat comparison: the digits a moving number supports, and points matched by identity."""

import pandas as pd
import pytest

from wsss_lib.experiments.repeat import compare, summary, supported_digits


@pytest.mark.parametrize("delta, digits", [(0.0, 3), (0.00049, 3), (0.0005, 2), (0.0049, 2), (0.03, 1), (0.2, 0)])
def test_supported_digits(delta, digits):
    assert supported_digits(delta) == digits


def test_points_are_matched_by_their_identity_and_summarized():
    first = pd.DataFrame([{"notebook": "03_train_oaa_plus.ipynb", "point": "p1", "p.loss": "hl", "p.seed": 0,
                           "oaa_plus_miou": 0.3361, "dead_head_units": 0.0},
                          {"notebook": "03_train_oaa_plus.ipynb", "point": "p2", "p.loss": "hl", "p.seed": 1,
                           "oaa_plus_miou": 0.2000, "dead_head_units": 0.0}])
    repeat = pd.DataFrame([{"notebook": "03_train_oaa_plus.ipynb", "point": "p2", "oaa_plus_miou": 0.2042,
                            "dead_head_units": 0.0},
                           {"notebook": "03_train_oaa_plus.ipynb", "point": "p1", "oaa_plus_miou": 0.3361,
                            "dead_head_units": 0.0}])
    d = compare(first, repeat)
    assert len(d) == 4 and d.loc[d["point"] == "loss=hl, seed=1", "|difference|"].max() == pytest.approx(0.0042)
    s = summary(d).loc[("03_train_oaa_plus.ipynb", "oaa_plus_miou")]
    assert s["digits supported"] == 2 and not s["bit for bit"]
    assert summary(d).loc[("03_train_oaa_plus.ipynb", "dead_head_units"), "bit for bit"]


def test_tables_print_the_digits_the_repeat_supports(tmp_path, monkeypatch):
    import json

    from wsss_lib.experiments.repeat import digits_record
    from wsss_lib.reporting.tables import core
    from wsss_lib.runs.profile import FULL, QUICK

    summ = pd.DataFrame({"notebook": ["a", "b"], "metric": ["cam_miou", "cam_miou"], "points": [3, 3],
                         "largest": [0.0004, 0.004], "median": [0.0, 0.0], "digits supported": [3, 2],
                         "bit for bit": [False, False]}).set_index(["notebook", "metric"])
    record = digits_record(summ)
    assert record["digits"] == {"cam_miou": 2} and record["largest"]["cam_miou"] == 0.004  # the fewest digits of any stage
    f = tmp_path / "repeat.json"
    f.write_text(json.dumps(record))
    monkeypatch.setattr(core, "REPEAT_DIGITS", f)
    assert core.metric_digits("cam_miou", FULL) == 2
    assert core.metric_digits("seg_miou", FULL) == 3  # not repeated: 3 digits
    assert core.metric_digits("cam_miou", QUICK) == 3
    assert core.mean_std([0.4111, 0.4222, 0.4333], core.metric_digits("cam_miou", FULL)) == "0.42 ± 0.01"


def test_the_repeat_records_each_orderings_verdict_and_how_far_its_differences_moved(quick_voc, monkeypatch):
    """An ordering that holds in the first run but not in the repeat is shown as such next to the
    table's own verdict, and the paired differences are printed to the digits their move supports."""
    from test_tables import _result

    from wsss_lib.experiments.repeat import digits_record, orderings
    from wsss_lib.reporting.tables import core
    from wsss_lib.reporting.tables.oaa import OAA_TABLE
    from wsss_lib.runs.profile import QUICK

    def runs(ave0: float) -> pd.DataFrame:  # CAM 0.30/0.31/0.32; OAA-AVE +0.01 in seeds 1, 2; OAA-MAX equal to CAM
        return pd.DataFrame([_result("classifier", s, {"cam_miou": c, "oaa_ave_miou": a, "oaa_max_miou": c}, {"seed": s})
                             for s, c, a in ((0, 0.30, ave0), (1, 0.31, 0.32), (2, 0.32, 0.33))])

    first, repeat = runs(0.31), runs(0.295)  # seed 0's OAA-AVE moves from +0.010 to -0.005 against its CAM
    o = orderings(first, repeat, QUICK).set_index(["table", "row"])
    ave = o.loc[("oaa_table", "OAA-AVE")]
    assert ave["ordering"] == "above in every seed" and ave["ordering in the repeat"] == "not ordered"
    assert ave["largest move"] == pytest.approx(0.015) and ave["against"] == "CAM"
    assert o.loc[("oaa_table", "OAA-MAX"), "largest move"] == 0.0
    summ = pd.DataFrame({"notebook": ["a"], "metric": ["cam_miou"], "points": [3], "largest": [0.0], "median": [0.0],
                         "digits supported": [3], "bit for bit": [True]}).set_index(["notebook", "metric"])
    record = digits_record(summ, o.reset_index())
    assert record["difference_digits"]["oaa_table"] == 1 and record["orderings"]["oaa_table"]["OAA-AVE"] == "not ordered"
    monkeypatch.setattr(core, "repeat_record", lambda profile: record)
    d = core.differences(OAA_TABLE, first, QUICK)
    assert d.loc["OAA-AVE", "ordering"] == "above in every seed"
    assert d.loc["OAA-AVE", "ordering in the repeat"] == "not ordered"
    assert d.loc["OAA-AVE", "differences"] == "+0.0, +0.0, +0.0"  # they moved by 0.015: one digit


def test_every_number_of_a_table_is_printed_to_the_digits_the_repeat_supports(quick_voc, monkeypatch, tmp_path):
    """Mean, std and per-seed values alike (a mean printed to three digits beside values printed to
    one would claim what the repeat does not support); the numbers behind the cells keep full precision."""
    from test_tables import _result

    from wsss_lib.reporting.tables import core
    from wsss_lib.reporting.tables.oaa import OAA_TABLE
    from wsss_lib.runs.profile import QUICK

    df = pd.DataFrame([_result("classifier", s, {"cam_miou": c, "oaa_ave_miou": c, "oaa_max_miou": c}, {"seed": s})
                       for s, c in ((0, 0.387), (1, 0.420), (2, 0.431))])
    monkeypatch.setattr(core, "repeat_record", lambda profile: {"digits": {"cam_miou": 1, "oaa_ave_miou": 1,
                                                                           "oaa_max_miou": 1}})
    r = core.render(OAA_TABLE, df, QUICK)
    md = core.write(r, tmp_path / "t")
    cam = next(line for line in md.splitlines() if line.startswith("| CAM"))
    assert [c.strip() for c in cam.strip("|").split("|")][:4] == ["CAM", "0.4", "0.0", "3"]
    assert "0.4, 0.4, 0.4" in cam and "0.413" not in md
    assert r.values[("CAM", "CAM mIoU")] == [0.387, 0.420, 0.431]  # what figures draw
    assert r.frame.loc["CAM", "CAM mIoU mean"] == pytest.approx(0.41267, abs=1e-5)
