"""The course's release and a grading demo, through nbgrader (``make course``, ``make grade-demo``).

    python -m wsss_lib.course.grading release      # course/release/<assignment>/: the notebooks, solutions stripped
    python -m wsss_lib.course.grading grade-demo   # a demo student's submission autograded; scores and feedback

The course folder has nbgrader's layout: ``course/source/<assignment>/`` holds the exercise notebooks
with their solutions between ``### BEGIN SOLUTION`` / ``### END SOLUTION`` and locked check cells;
nbgrader makes ``release/``, ``submitted/``, ``autograded/``, ``feedback/`` and ``gradebook.db``
next to it. The demo submission answers one exercise right and one wrong (eq. 8 of OAA as printed,
with its ``p`` factor) and leaves the rest unanswered, so the grades show all three outcomes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from wsss_lib.util.paths import REPO

COURSE = REPO / "course"
ASSIGNMENT = "wsss_exercises"
DEMO_STUDENT = "demo_student"

#: the demo student's answers: notebook -> {solution cell's grade_id: code}
DEMO_ANSWERS = {
    "exercises_oaa.ipynb": {
        "ex2_solution": 'def fuse_max(M, A):\n    "OAA eq. 5."\n    return torch.maximum(M, A)\n',
        # a classic mistake: eq. 8 as printed, with the p factor that vanishes on N-
        "ex5_solution": ("import torch.nn.functional as Fn\n\ndef hybrid_loss(F, p):\n"
                         "    pos = (p > 0).float()\n    neg = 1 - pos\n"
                         "    l_pos = (-p * Fn.logsigmoid(F) * pos).sum((-2, -1)) / pos.sum((-2, -1)).clamp_min(1)\n"
                         "    l_neg = (-p * Fn.logsigmoid(-F) * neg).sum((-2, -1)) / neg.sum((-2, -1)).clamp_min(1)\n"
                         "    return (l_pos + l_neg).mean(1).mean()\n"),
    },
}


def _nbgrader(*args: str, course: Path = COURSE) -> subprocess.CompletedProcess:
    """Run nbgrader from the course folder with this Python's scripts on PATH (it calls ``alembic``)."""
    if not (course / "source" / ASSIGNMENT).is_dir():
        raise FileNotFoundError(f"{course / 'source' / ASSIGNMENT}: the course's source notebooks are missing")
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    cmd = [sys.executable, "-m", "nbgrader", *args]
    p = subprocess.run(cmd, cwd=course, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"`nbgrader {' '.join(args)}` (in {course}) failed:\n{p.stdout[-3000:]}{p.stderr[-3000:]}")
    return p


def release(course: Path = COURSE) -> Path:
    """``course/release/<assignment>/``: the notebooks with their solutions replaced by stubs."""
    _nbgrader("generate_assignment", ASSIGNMENT, "--force", course=course)
    out = course / "release" / ASSIGNMENT
    for nb in out.glob("*.ipynb"):
        if "BEGIN SOLUTION" in nb.read_text():
            raise RuntimeError(f"{nb}: a solution survived the release")
    return out


def _answer(notebook: Path, answers: dict[str, str]) -> None:
    nb = json.loads(notebook.read_text())
    found = set()
    for cell in nb["cells"]:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if gid in answers:
            cell["source"] = answers[gid]
            found.add(gid)
    missing = set(answers) - found
    if missing:
        raise KeyError(f"{notebook}: no solution cell {sorted(missing)}")
    notebook.write_text(json.dumps(nb, indent=1) + "\n")


def _failure_messages(autograded: Path) -> dict[str, str]:
    """grade_id -> the last line of the error a check cell raised in the autograded notebooks."""
    out = {}
    for nb_file in sorted(autograded.glob("*.ipynb")):
        for cell in json.loads(nb_file.read_text())["cells"]:
            gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            for o in cell.get("outputs", []):
                if o.get("output_type") == "error":
                    out[gid] = f"{o['ename']}: {o['evalue']}"
    return out


def grade_demo(course: Path = COURSE) -> list[dict]:
    """Release, submit the demo student's answers, autograde, write feedback; one dict per check cell
    (notebook, grade_id, score, max_score, message)."""
    from nbgrader.api import Gradebook  # lazy: heavy: only when grading

    rel = release(course)
    sub = course / "submitted" / DEMO_STUDENT / ASSIGNMENT
    if sub.exists():
        shutil.rmtree(sub)
    shutil.copytree(rel, sub)
    for name, answers in DEMO_ANSWERS.items():
        _answer(sub / name, answers)
    _nbgrader("autograde", ASSIGNMENT, "--student", DEMO_STUDENT, "--force", course=course)
    _nbgrader("generate_feedback", ASSIGNMENT, "--student", DEMO_STUDENT, "--force", course=course)
    messages = _failure_messages(course / "autograded" / DEMO_STUDENT / ASSIGNMENT)
    rows = []
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        submission = gb.find_submission(ASSIGNMENT, DEMO_STUDENT)
        for nb in sorted(submission.notebooks, key=lambda n: n.name):
            for grade in sorted(nb.grades, key=lambda g: int("".join(filter(str.isdigit, g.name)) or 0)):
                rows.append({"notebook": nb.name, "check": grade.name, "score": grade.score,
                             "max_score": grade.max_score, "message": messages.get(grade.name, "")})
    return rows


def format_grades(rows: list[dict], course: Path = COURSE) -> str:
    lines = [f"Grades of {DEMO_STUDENT} for {ASSIGNMENT} (autograded by nbgrader):", ""]
    for r in rows:
        msg = r["message"].splitlines()[0] if r["message"] else "passed"
        lines.append(f"  {r['notebook']:<22} {r['check']:<10} {r['score']:.0f}/{r['max_score']:.0f}  {msg}")
    total = sum(r["score"] for r in rows)
    lines += ["", f"Total {total:.0f} of {sum(r['max_score'] for r in rows):.0f}. Feedback (HTML): "
              f"{course / 'feedback' / DEMO_STUDENT / ASSIGNMENT}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m wsss_lib.course.grading", description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=("release", "grade-demo"))
    ap.add_argument("--course", type=Path, default=COURSE, help=f"the course folder (default {COURSE})")
    args = ap.parse_args(argv)
    if args.what == "release":
        out = release(args.course)
        print(f"student release: {out} ({', '.join(p.name for p in sorted(out.glob('*.ipynb')))})")
    else:
        print(format_grades(grade_demo(args.course), args.course))
    return 0


if __name__ == "__main__":
    sys.exit(main())
