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
