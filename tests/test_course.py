"""The course: exercise checks that can fail, nbgrader's release and grading.

Every check cell of the course's source notebooks is run against a plausible wrong answer (the
mistake its exercise warns about) and must fail naming the case; against the solution it must
pass. The release strips every solution; the grading demo gives 1 point to the right answer, 0 to
the wrong one with the check's message, and 0 to the unanswered ones."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from wsss_lib.course.checks import ExerciseNotAnswered, check, compare

COURSE = Path(__file__).resolve().parents[1] / "course"
SOURCE = COURSE / "source" / "wsss_exercises"

#: a plausible wrong answer per exercise: the pitfall its text names
WRONG = {
    "ex1_solution": "def normalize_attention(F):\n    return torch.relu(F) / F.amax(dim=(-2, -1), keepdim=True)\n",
    "ex2_solution": "def fuse_max(M, A):\n    return (M + A) / 2\n",
    "ex3_solution": "def ave_update(M, A, V, t):\n    return ((t - 1) * M + A) / t\n",
    "ex4_solution": ("def gate(scores, labels):\n    labels = labels.bool()\n"
                     "    best = scores.masked_fill(labels, float('-inf')).amax(1, keepdim=True)\n"
                     "    return labels & (scores >= best)\n"),
    "ex5_solution": ("import torch.nn.functional as Fn\ndef hybrid_loss(F, p):\n    pos = (p > 0).float(); neg = 1 - pos\n"
                     "    lp = (-p * Fn.logsigmoid(F) * pos).sum((-2, -1)) / pos.sum((-2, -1)).clamp_min(1)\n"
                     "    ln = (-p * Fn.logsigmoid(-F) * neg).sum((-2, -1)) / neg.sum((-2, -1)).clamp_min(1)\n"
                     "    return (lp + ln).mean(1).mean()\n"),
    "ex6_solution": ("def gaussian_modulation(x):\n    mu = x.mean()\n    sigma = ((x - mu) ** 2).mean().sqrt().clamp_min(1e-6)\n"
                     "    return torch.exp(-((x - mu) ** 2) / (2 * sigma ** 2))\n"),
    "ex7_solution": "def threshold_modulation(G, threshold):\n    return torch.where(G > threshold, G, torch.zeros_like(G))\n",
    "ex8_solution": "def weighted_cam(M_s, M_c, xi):\n    return (1 - xi) * M_s + xi * M_c\n",
    "ex9_solution": None,  # the solution without its last step (the 1% rule): made below
    "ex10_solution": ("def confusion(pred, target, num_classes):\n    pred = np.asarray(pred).ravel(); target = np.asarray(target).ravel()\n"
                      "    keep = target != 255\n"
                      "    c = np.bincount(pred[keep] * num_classes + target[keep], minlength=num_classes ** 2)\n"
                      "    return c.reshape(num_classes, num_classes).astype(np.int64)\n"),
    "ex11_solution": ("def miou(pred, target, num_classes):\n    cm = confusion(pred, target, num_classes).astype(float)\n"
                      "    tp = np.diag(cm); d = cm.sum(0) + cm.sum(1) - tp\n"
                      "    return float(np.mean(np.where(d > 0, tp / np.maximum(d, 1), 0.0)))\n"),
}
#: more wrong answers: ignored pixels counted (as background, or as a class index)
MORE_WRONG = {
    "ex10_solution": ("def confusion(pred, target, num_classes):\n    pred = np.asarray(pred).ravel()\n"
                      "    target = np.where(np.asarray(target).ravel() == 255, 0, np.asarray(target).ravel())\n"
                      "    c = np.bincount(target * num_classes + pred, minlength=num_classes ** 2)\n"
                      "    return c.reshape(num_classes, num_classes).astype(np.int64)\n"),
    "ex11_solution": ("def miou(pred, target, num_classes):\n    target = np.where(np.asarray(target) == 255, 0, target)\n"
                      "    cm = confusion(pred, target, num_classes).astype(float)\n"
                      "    tp = np.diag(cm); d = cm.sum(0) + cm.sum(1) - tp\n"
                      "    return float(np.mean(tp[d > 0] / d[d > 0]))\n"),
}


def _cells(nb: Path) -> list[dict]:
    return json.loads(nb.read_text())["cells"]


def _gid(cell: dict) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def _src(cell: dict) -> str:
    return "".join(cell["source"])


def _exercises():
    """(notebook, solution cell id, check cell id) in order, with the code before each exercise."""
    for nb in sorted(SOURCE.glob("*.ipynb")):
        cells = _cells(nb)
        for i, c in enumerate(cells):
            gid = _gid(c)
            if gid and gid.endswith("_solution"):
                yield nb, cells, i


def test_every_check_passes_the_solution_and_fails_the_pitfall():
    seen = 0
    for nb, cells, i in _exercises():
        gid = _gid(cells[i])
        check_cell = cells[i + 1]
        assert _gid(check_cell) == gid.replace("_solution", "_check"), f"{nb.name}: {gid} has no check cell after it"
        ns = {"seed": 0, "quick": False, "In": []}  # "In": as in a kernel (no papermill cell: no unknown names)
        for c in cells[:i]:  # imports and the earlier solutions (exercise 11 uses exercise 10's function)
            if c["cell_type"] == "code":
                exec(_src(c), ns)
        exec(_src(cells[i]), ns)
        exec(_src(check_cell), ns)  # the solution passes
        wrong = WRONG[gid]
        if wrong is None:  # exercise 9: the solution without its 1% rule
            wrong = _src(cells[i]).replace("if ((out > 0) & (out < 255)).sum() < 0.01 * out.size:", "if False:")
            assert wrong != _src(cells[i])
        for bad in (wrong, *([MORE_WRONG[gid]] if gid in MORE_WRONG else [])):
            exec(bad, ns)
            with pytest.raises(AssertionError, match=r"case '") as err:
                exec(_src(check_cell), ns)
            assert "expected" in str(err.value) or "raised" in str(err.value), str(err.value)
        # the released stub (what nbgrader leaves in place of the solution) fails naming the exercise
        sol = _src(cells[i])
        begin, end = sol.index("### BEGIN SOLUTION"), sol.index("### END SOLUTION") + len("### END SOLUTION")
        indent = sol[:begin].rsplit("\n", 1)[-1]
        exec(sol[:begin] + "raise NotImplementedError()" + sol[end:], ns)
        with pytest.raises(ExerciseNotAnswered, match=r"^Exercise \d+ .*not answered yet"):
            exec(_src(check_cell), ns)
        assert indent.strip() == ""
        seen += 1
    assert seen >= 10 and seen == len(WRONG)


def test_check_names_the_case_the_expected_and_the_obtained_values():
    ref = lambda x: x * 2  # noqa: E731
    with pytest.raises(AssertionError) as err:
        check(lambda x: x * 2 + (x > 2), ref, [("small", (torch.tensor([1.0, 2.0]),)), ("big", (torch.tensor([3.0]),))],
              name="Exercise 0")
    msg = str(err.value)
    assert "Exercise 0, case 'big'" in msg and "expected" in msg and "obtained" in msg and "7 instead of 6" in msg

    def stub(x):
        raise NotImplementedError()
    with pytest.raises(ExerciseNotAnswered, match="not answered yet"):
        check(stub, ref, [("small", (torch.tensor([1.0]),))], name="Exercise 0")
    with pytest.raises(AssertionError, match="your function raised ZeroDivisionError"):
        check(lambda x: 1 / 0, ref, [("small", (torch.tensor([1.0]),))], name="Exercise 0")
    assert check(ref, ref, [("small", (torch.tensor([1.0]),))]) is None  # a number would be nbgrader's partial credit
    assert compare(torch.zeros(2), torch.zeros(3)) == "shape (2,) instead of (3,)"
    assert compare(float("nan"), float("nan")) == ""
    assert compare(torch.tensor([1.0, 0.0]), torch.tensor([True, False])).startswith("dtype float32 instead of bool")
    assert compare("a", "b") == "'a' instead of 'b'"


@pytest.mark.slow
def test_release_strips_solutions_and_the_grading_demo_scores_all_three_outcomes(tmp_path):
    from wsss_lib.course.grading import grade_demo

    course = tmp_path / "course"
    shutil.copytree(COURSE, course, ignore=shutil.ignore_patterns("release", "submitted", "autograded", "feedback",
                                                                   "gradebook.db", ".ipynb_checkpoints"))
    rows = grade_demo(course)
    released = sorted((course / "release" / "wsss_exercises").glob("*.ipynb"))
    assert [p.name for p in released] == [p.name for p in sorted(SOURCE.glob("*.ipynb"))]
    for nb in released:
        text = nb.read_text()
        assert "BEGIN SOLUTION" not in text and "torch.maximum(M, A)" not in text
        assert text.count("raise NotImplementedError()") >= 5
    by = {r["check"]: r for r in rows}
    assert len(by) == 11 and all(r["max_score"] == 1 for r in rows)
    assert by["ex2_check"]["score"] == 1 and by["ex2_check"]["message"] == ""
    assert by["ex5_check"]["score"] == 0 and "Exercise 5" in by["ex5_check"]["message"]
    assert "case 'hand-made" in by["ex5_check"]["message"]
    unanswered = [r for k, r in by.items() if k not in ("ex2_check", "ex5_check")]
    assert all(r["score"] == 0 and r["message"].startswith("ExerciseNotAnswered: Exercise ")
               and "not answered yet" in r["message"] for r in unanswered)
    assert list((course / "feedback" / "demo_student" / "wsss_exercises").glob("*.html"))
