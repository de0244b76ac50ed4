"""Checks for the course's exercises: a student's function against the library's, case by case.

An exercise cell asks a student to write one formula of the papers as a function; its check cell
calls :func:`check` with the library function that implements the same formula and a list of cases
(hand-made tensors, random ones, and the edge cases the papers' pitfalls live in). The first case
that differs fails with its name, its inputs, the expected and the obtained values, so a student
sees *what* is wrong, not only *that* something is. nbgrader grades a check cell by whether it
raises.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Sequence

import numpy as np
import torch


class ExerciseNotAnswered(AssertionError):
    """The exercise's function still raises NotImplementedError (the released stub)."""


def _as_array(x: Any) -> np.ndarray | None:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, (np.ndarray, float, int, np.floating, np.integer, bool, np.bool_)):
        return np.asarray(x)
    return None


def _short(x: Any, limit: int = 400) -> str:
    a = _as_array(x)
    if a is not None and a.ndim > 0:
        with np.printoptions(precision=4, suppress=True, threshold=40, edgeitems=3):
            text = f"{type(x).__name__} of shape {tuple(a.shape)}, dtype {a.dtype}:\n{a}"
    elif isinstance(x, (tuple, list)):
        text = "(" + ", ".join(_short(v, limit // max(1, len(x))) for v in x) + ")"
    else:
        text = repr(x if a is None else a.item())
    return text if len(text) <= limit else text[:limit] + " ..."


def _value(v: Any) -> str:
    v = v.item() if hasattr(v, "item") else v
    return f"{v:.6g}" if isinstance(v, float) else repr(v)


def compare(obtained: Any, expected: Any, atol: float = 1e-5, rtol: float = 1e-4) -> str:
    """Empty when ``obtained`` matches ``expected`` (tensors, arrays, numbers, tuples of them; NaN
    matches NaN), else what differs: the type, the shape, a bool result of another dtype, or how
    many values differ and the first of them."""
    if isinstance(expected, (tuple, list)):
        if not isinstance(obtained, (tuple, list)) or len(obtained) != len(expected):
            return f"expected a tuple of {len(expected)} values, obtained {type(obtained).__name__}"
        for k, (o, e) in enumerate(zip(obtained, expected)):
            why = compare(o, e, atol, rtol)
            if why:
                return f"value {k}: {why}"
        return ""
    e, o = _as_array(expected), _as_array(obtained)
    if e is None:
        return "" if obtained == expected else f"{obtained!r} instead of {expected!r}"
    if o is None:
        return f"expected a {type(expected).__name__}, obtained {type(obtained).__name__}"
    if o.shape != e.shape:
        return f"shape {tuple(o.shape)} instead of {tuple(e.shape)}"
    if e.dtype == bool and o.dtype != bool:
        return f"dtype {o.dtype} instead of bool (a mask: compare, do not compute 0/1 numbers)"
    if e.dtype == bool or e.dtype.kind in "iu":
        bad = o != e
    else:
        o, e = o.astype(np.float64), e.astype(np.float64)
        bad = ~np.isclose(o, e, atol=atol, rtol=rtol, equal_nan=True)
    if not bad.any():
        return ""
    where = np.unravel_index(int(np.argmax(bad)), bad.shape) if bad.ndim else ()
    first = f"first at index {tuple(int(i) for i in where)}: {_value(o[where])} instead of {_value(e[where])}"
    return f"{int(bad.sum())} of {bad.size} values differ; {first}"


def check(student: Callable, reference: Callable, cases: Sequence[tuple[str, tuple]], name: str = "",
          atol: float = 1e-5, rtol: float = 1e-4) -> None:
    """Run ``student`` and ``reference`` on every case ``(description, args)``; raise an
    :class:`AssertionError` naming the first case that differs (inputs, expected, obtained), or
    :class:`ExerciseNotAnswered` if the stub is still there. Returns nothing: a number left as a check
    cell's result would be read by nbgrader as partial credit."""
    __tracebackhide__ = True  # IPython and pytest show the message, not this function's lines
    for desc, args in cases:
        expected = reference(*copy.deepcopy(args))
        try:
            obtained = student(*copy.deepcopy(args))  # a function that edits its inputs cannot fool the next case
        except NotImplementedError:
            raise ExerciseNotAnswered(f"{name}: not answered yet (the function still raises "
                                      "NotImplementedError: replace that line by your code)") from None
        except Exception as err:  # the student's own error, shown with the case that caused it
            raise AssertionError(f"{name}, case '{desc}': your function raised {type(err).__name__}: {err}\n"
                                 f"  inputs: {_short(args)}") from None
        why = compare(obtained, expected, atol, rtol)
        if why:
            raise AssertionError(f"{name}, case '{desc}': {why}\n  inputs: {_short(args)}\n"
                                 f"  expected: {_short(expected)}\n  obtained: {_short(obtained)}")
    print(f"{name}: all {len(cases)} cases pass: " + "; ".join(d for d, _ in cases))


__all__ = ["ExerciseNotAnswered", "check", "compare"]
