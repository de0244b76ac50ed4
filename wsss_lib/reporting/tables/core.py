"""Tables as data: a table declares its rows as stage calls, and the rows are the runs those calls
resolve to.

A :class:`Row` is a stage and the parameters a user would pass to it (everything else at the
stage's defaults, the profile's settings included), a metric, and the paper's figure. For each seed
found among the results, the row's call is planned (:meth:`wsss_lib.stages.base.Stage.plan`, which
writes nothing) and the finished points whose run has *that* identity are the row's values: a grid
that writes a default out lands in the same row as one that leaves it out, a run with other
``epochs`` or of another profile never enters it, and rows are never matched by how a grid spelled
its parameters. :func:`values` refuses to average runs that differ in anything but the seed (naming
the differing parameters), and every rendered table states the profile and code digests its rows
came from (:func:`provenance`), and which rows are stale.

A :class:`Table` is rows and, optionally, :class:`Column` s (parameter overrides and metrics per
column); :func:`render` turns it into a DataFrame, :func:`write` into ``<name>.md`` and ``.html``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import pandas as pd

from wsss_lib.data.synthetic import benchmark_exists
from wsss_lib.reporting.benchmark_page import write_table
from wsss_lib.runs.profile import Profile
from wsss_lib.util.paths import REPO, git_commit
from wsss_lib.stages import get_stage

#: the header of the papers' column
PAPER_COL = "paper (VOC val seg. mIoU %)"


class SettingMismatch(ValueError):
    """Runs of different settings asked to be averaged into one value (names the parameters)."""


@dataclass(frozen=True)
class Row:
    """One row: a stage call (``params`` as a user passes them; the rest at defaults), its metric
    (a template filled from ``vars``, e.g. ``"{source}_miou"``) and the paper's figure."""

    label: str
    stage: str
    params: Mapping = field(default_factory=dict)
    metric: str = ""
    vars: Mapping = field(default_factory=dict)
    paper: float | str | None = None


@dataclass(frozen=True)
class Column:
    """One column of a grid-shaped table: parameters merged into every row's (nested mappings
    merged too), the metric (template; empty = the row's) and how cells are shown (``mean_std``:
    "0.123 ± 0.004", ``mean``: the mean as a number)."""

    label: str
    params: Mapping = field(default_factory=dict)
    metric: str = ""
    agg: str = "mean_std"


@dataclass(frozen=True)
class Table:
    """A table declared as data (see the module docstring). Without ``columns``: one value per row
    as mean, std, n and the values over seeds, next to the paper's figure."""

    name: str
    rows: tuple[Row, ...]
    columns: tuple[Column, ...] = ()
    value: str = "CAM mIoU"
    index: str = "method"
    paper: str = PAPER_COL  # the paper column's header ("" for none)
    title: str = ""  # what the table shows, in words (notebook 07 heads it with this)
    note: str = ""  # how to read it: its measure, abbreviations and marks
    #: where it is declared (``wsss_lib.reporting.tables.oaa``): set to the module that builds it
    declared_in: str = ""

    def __post_init__(self) -> None:
        if not self.declared_in:  # the module whose code made this Table (its provenance line names it)
            object.__setattr__(self, "declared_in", sys._getframe(2).f_globals.get("__name__", ""))

    @property
    def declaration(self) -> str:
        return f"{self.declared_in}: {self.name}" if self.declared_in else self.name


def _merge(a: Mapping, b: Mapping) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


# -- selecting the runs of a row ------------------------------------------------------------------
_PLANS: dict[tuple, str | None] = {}


def planned_identity(stage: str, params: Mapping, seed: int, profile: Profile) -> str | None:
    """The identity of the run ``stage`` would make for ``params`` and ``seed`` (``None`` if the
    call cannot be planned here, e.g. weights that are not on this machine)."""

    key = (stage, json.dumps(params, sort_keys=True, default=str), seed, profile.name)
    if key not in _PLANS:
        try:
            _PLANS[key] = get_stage(stage).plan(seed=seed, quick=profile, progress=False, **dict(params)).identity
        except (FileNotFoundError, ValueError):
            _PLANS[key] = None
    return _PLANS[key]


def candidates(df: pd.DataFrame, stage: str, params: Mapping, profile: Profile) -> pd.DataFrame:
    """Results whose run is of ``stage`` and agrees with the plain config values ``params`` names
    (a cheap filter before planning; the identity decides). An embedded benchmark variant that was
    never generated has no runs (and is not generated to find that out)."""

    root = str(params.get("data_root", ""))
    if df.empty or "r.stage" not in df or (root.startswith("embedded:") and (
            root[len("embedded:"):] not in profile.benchmarks
            or not benchmark_exists(profile.benchmark(root[len("embedded:"):])))):
        return df.iloc[:0]
    rows = df[df["r.stage"] == stage]
    for k, v in params.items():
        col = f"r.{k}"
        if col in rows and not isinstance(v, (Mapping, list, tuple)):
            rows = rows[rows[col].astype(object) == v]
    return rows


def runs_of(df: pd.DataFrame, stage: str, params: Mapping, profile: Profile) -> pd.DataFrame:
    """The finished points of the row's call, one per run (sorted by seed): for every seed found
    among the candidates, the points whose run is the planned one."""
    rows = candidates(df, stage, params, profile)
    if rows.empty:
        return rows
    seeds = sorted({int(s) for s in rows["r.seed"].dropna()})
    want = {planned_identity(stage, params, s, profile) for s in seeds} - {None}
    rows = rows[rows["run"].isin(want)]
    return rows.sort_values("r.seed").drop_duplicates(subset=["run"])


#: resolved parameters that differ between seeds by construction (upstream runs are made per seed)
_PER_SEED = ("r.seed",)


def check_same_setting(runs: pd.DataFrame, what: str = "") -> None:
    """Refuse runs that differ in anything but the seed and their (per-seed) upstream runs."""

    if len(runs) < 2:
        return
    per_seed = set(_PER_SEED)
    for st in runs["r.stage"].dropna().unique():
        per_seed.update(f"r.{a}" for a in get_stage(st).upstream)
    cols = [c for c in runs.columns if c.startswith("r.") and c not in per_seed]
    differ = {}
    for c in cols:
        vals = {json.dumps(v, sort_keys=True, default=str) for v in runs[c].tolist()}
        if len(vals) > 1:
            differ[c[2:]] = sorted(vals)
    if differ:
        shown = "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(differ.items()))
        raise SettingMismatch(f"{what or 'a table row'} would average runs of different settings ({shown}); "
                              "select one setting (each row is one stage call: its parameters, the rest at defaults)")


def values(runs: pd.DataFrame, metric: str, what: str = "") -> list[float]:
    """The metric over the runs (one per seed), after :func:`check_same_setting`."""
    check_same_setting(runs, what)
    return [float(v) for v in runs[metric].dropna()] if metric in runs else []


#: where the repeat of the main job records the digits each metric supports
#: (``python -m wsss_lib.experiments.repeat``)
REPEAT_DIGITS = REPO / "reports" / "repeat.json"


def metric_digits(metric: str, profile: Profile) -> int:
    """The decimals a table prints ``metric`` with: the digits the repeat of the main job supports
    (:data:`REPEAT_DIGITS`: every point moved by less than half a unit of that digit when run again
    with another thread count), at most 3; 3 where the metric was not repeated, and in the quick
    profile."""
    digits = repeat_record(profile).get("digits", {})
    return max(1, min(3, int(digits.get(metric, 3))))


def repeat_record(profile: Profile) -> dict:
    """What the repeat of the main job recorded (:data:`REPEAT_DIGITS`); empty in the quick profile
    and where the repeat was not run."""
    if profile.quick or not REPEAT_DIGITS.exists():
        return {}
    return json.loads(REPEAT_DIGITS.read_text())


def mean_std(vals: list[float], digits: int = 3) -> str:
    if not vals:
        return "-"
    v = np.asarray(vals, dtype=float)
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}" if v.size > 1 else f"{v.mean():.{digits}f}"  # no spread from one run


# -- rendering -------------------------------------------------------------------------------------
@dataclass
class Rendered:
    """A rendered table and where its rows came from. ``values``: the numbers behind every cell, by
    (row label, column label; the table's value for a one-value table), at full precision (figures
    draw these, never the printed cells); ``digits``: the decimals each numeric column is printed with
    (the digits the repeat supports for its metric; 3 where not listed)."""

    frame: pd.DataFrame
    runs: pd.DataFrame  # every run that entered a cell
    declaration: str = ""  # the table it was rendered from (``module: name``)
    values: dict = field(default_factory=dict)
    digits: dict = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return self.frame.empty


def render(table: Table, df: pd.DataFrame, profile: Profile) -> Rendered:
    """The table's DataFrame from the results ``df`` (rows with no runs are left out)."""
    used = []
    out, raw, col_digits = {}, {}, {}
    for row in table.rows:
        cols = table.columns or (Column(table.value, {}, ""),)
        cells, n_any = {}, 0
        for col in cols:
            params = _merge(row.params, col.params)
            runs = runs_of(df, row.stage, params, profile)
            metric = (col.metric or row.metric).format(**row.vars)
            digits = metric_digits(metric, profile)
            vals = values(runs, metric, f"row {row.label!r} of {table.name}")
            used.append(runs)
            n_any = max(n_any, len(vals))
            raw[(row.label, col.label)] = list(vals)
            numeric = ((f"{table.value} mean", f"{table.value} std") if not table.columns
                       else (col.label,) if col.agg == "mean" else ())
            for c in numeric:  # a column holding several metrics prints the fewest digits any supports
                col_digits[c] = min(col_digits.get(c, 3), digits)
            if not table.columns:
                cells = _mean_std_cells(table.value, vals, digits)
            elif col.agg == "mean":
                m = float(np.mean(vals)) if vals else np.nan
                cells[col.label] = int(m) if vals and all(float(v).is_integer() for v in vals) and m.is_integer() else m
            else:
                cells[col.label] = mean_std(vals, digits) + (f" (n={len(vals)})" if 0 < len(vals) < 3 else "")
        if n_any == 0:
            continue
        if table.paper:
            cells[table.paper] = (f"{row.paper:.1f}" if isinstance(row.paper, float) else str(row.paper)) \
                if row.paper is not None else "-"
        out[row.label] = cells
    frame = pd.DataFrame(out).T.rename_axis(table.index) if out else pd.DataFrame()
    runs = pd.concat(used).drop_duplicates(subset=["run"]) if used and any(len(u) for u in used) else pd.DataFrame()
    return Rendered(frame, runs, table.declaration, {k: v for k, v in raw.items() if k[0] in out}, col_digits)


def _mean_std_cells(value: str, vals: list[float], digits: int = 3) -> dict:
    v = np.asarray(vals, dtype=float)
    return {f"{value} mean": float(v.mean()) if v.size else np.nan,
            f"{value} std": float(v.std(ddof=1)) if v.size > 1 else np.nan, "n": int(v.size),  # one run: no std
            "values": ", ".join(f"{x:.{digits}f}" for x in v)}


# -- orderings the seeds support -------------------------------------------------------------------
def paired_verdict(diffs: list[float]) -> str:
    """What per-seed paired differences (``row - reference``, same seed) support: ``above in every
    seed`` / ``below in every seed`` when all of at least 3 differences have that sign, ``not
    ordered`` when their signs differ or one is 0, ``too few seeds`` under 3. The rule was fixed
    before any result it judges: an ordering is claimed only where every seed agrees."""
    if len(diffs) < 3:
        return "too few seeds"
    if all(d > 0 for d in diffs):
        return "above in every seed"
    if all(d < 0 for d in diffs):
        return "below in every seed"
    return "not ordered"


def seed_values(runs: pd.DataFrame, metric: str, what: str = "") -> dict[int, float]:
    """The metric by seed (after :func:`check_same_setting`)."""
    check_same_setting(runs, what)
    if metric not in runs or runs.empty:
        return {}
    return {int(s): float(v) for s, v in zip(runs["r.seed"], runs[metric]) if pd.notna(v)}


def paired(table: Table, df: pd.DataFrame, profile: Profile, reference: str | None = None
           ) -> tuple[str | None, dict[str, dict[int, float]]]:
    """The reference row's label (default: the first row with runs) and, for every other row of a
    one-value-per-row ``table``, its per-seed differences ``row - reference`` (same seed). Rows with
    no run, and seeds the reference lacks, are left out."""
    if table.columns:
        raise ValueError(f"differences: table {table.name!r} has columns; pair the values of one column at a time")
    by_label = {}
    for row in table.rows:
        runs = runs_of(df, row.stage, row.params, profile)
        vals = seed_values(runs, row.metric.format(**row.vars), f"row {row.label!r} of {table.name}")
        if vals:
            by_label[row.label] = vals
    ref_label = reference or next(iter(by_label), None)
    if ref_label is None or ref_label not in by_label:
        return None, {}
    ref = by_label[ref_label]
    return ref_label, {label: {s: vals[s] - ref[s] for s in sorted(set(vals) & set(ref))}
                       for label, vals in by_label.items() if label != ref_label}


def difference_digits(table: Table, profile: Profile) -> int:
    """The decimals the paired differences of ``table`` are printed with: the digits the repeat
    supports for them (every per-seed difference moved by less than half a unit of that digit when the
    main job ran again with another thread count), else the fewest its rows' metrics support."""
    record = repeat_record(profile)
    if table.name in record.get("difference_digits", {}):
        return max(1, min(3, int(record["difference_digits"][table.name])))
    return min([metric_digits(r.metric.format(**r.vars), profile) for r in table.rows] or [3])


def differences(table: Table, df: pd.DataFrame, profile: Profile, reference: str | None = None) -> pd.DataFrame:
    """Each row of a one-value-per-row ``table`` against its ``reference`` row (default: the first),
    paired by seed (:func:`paired`): the differences, their mean ± std (ddof 1), :func:`paired_verdict`
    and, where the repeat of the main job made the same rows, the verdict on the repeat's runs."""
    ref_label, pairs = paired(table, df, profile, reference)
    digits = difference_digits(table, profile)
    in_repeat = repeat_record(profile).get("orderings", {}).get(table.name)
    out = {}
    for label, by_seed in pairs.items():
        d = list(by_seed.values())
        out[label] = {"seeds": ", ".join(map(str, by_seed)), "differences": ", ".join(f"{x:+.{digits}f}" for x in d),
                      "mean ± std": mean_std(d, digits) if d else "-", "ordering": paired_verdict(d)}
        if in_repeat is not None:
            out[label]["ordering in the repeat"] = in_repeat.get(label, "not repeated")
    return pd.DataFrame(out).T.rename_axis(f"against {ref_label}") if out else pd.DataFrame()


def provenance(runs: pd.DataFrame, declaration: str = "") -> str:
    """One line: how many runs, their profile(s), the code digest(s) they were made by, stale ones,
    the table's declaration and the git commit of the code that rendered it."""
    if runs is None or runs.empty:
        return ""
    profiles = sorted(str(p) for p in runs.get("r.profile", pd.Series(dtype=object)).dropna().unique())
    codes = runs.get("code", pd.Series(dtype=object)).fillna("?").value_counts()
    code_s = ", ".join(f"`{c}` ({n})" for c, n in codes.items())
    stale = int(runs.get("stale", pd.Series(dtype=bool)).fillna(False).astype(bool).sum())
    line = (f"_{len(runs)} run(s), profile {', '.join(f'`{p}`' for p in profiles) or '?'}, made by code {code_s}"
            + (f"; **{stale} stale** (made by code that has changed since: run `make run` to remake them)" if stale
               else "") + (f"; table `{declaration}`" if declaration else "") + f", rendered at commit `{git_commit()}`._")
    return line


def printed(rendered: Rendered) -> pd.DataFrame:
    """The frame with each numeric column's floats written to its digits (:attr:`Rendered.digits`)."""
    frame = rendered.frame.copy()
    for col, d in rendered.digits.items():
        if col in frame:
            frame[col] = frame[col].map(lambda v, d=d: format(v, f".{d}f") if isinstance(v, float) and np.isfinite(v)
                                        else v).astype(object)
    return frame


def write(rendered: Rendered, stem, floatfmt: str = ".3f") -> str:
    """``<stem>.md`` and ``<stem>.html`` (the table and its provenance line, each numeric column to
    its digits: :func:`printed`; other floats with ``floatfmt``); returns the Markdown."""

    return write_table(printed(rendered), stem, floatfmt, caption=provenance(rendered.runs, rendered.declaration))


__all__ = ["Column", "PAPER_COL", "Rendered", "Row", "SettingMismatch", "Table", "candidates",
           "check_same_setting", "difference_digits", "differences", "mean_std", "metric_digits", "paired", "paired_verdict", "repeat_record", "seed_values", "planned_identity", "printed", "provenance", "render", "runs_of", "values",
           "write"]
