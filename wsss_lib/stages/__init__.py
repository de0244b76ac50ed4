"""The stages of the suite, in order (as IRN's ``run_sample.py`` lists its steps).

Each stage is one module here with a :class:`~wsss_lib.stages.base.Stage` subclass and its
config (see :mod:`wsss_lib.stages.base` for the interface). Adding a stage = one module (its
config, upstream stages, outputs, and its own lines) + its name below + its notebook.
"""

from __future__ import annotations

import importlib

#: stage name -> module under wsss_lib.stages, in pipeline order
ORDER = ("classifier", "evolution", "oaa_plus", "amr", "pseudo_labels", "segmentation")


def get_stage(name: str):
    """The stage object registered under ``name`` (its module's ``STAGE``)."""
    if name not in ORDER:
        raise KeyError(f"no stage {name!r}; stages: {', '.join(ORDER)}")
    return importlib.import_module(f"{__name__}.{name}").STAGE


def all_stages() -> list:
    return [get_stage(n) for n in ORDER]


def stage_of_notebook(notebook: str):
    """The stage a notebook runs: its last stage in :data:`ORDER` when it runs several (notebook 05:
    pseudo labels, then segmentation); ``None`` for notebooks that run no stage (the batch notebook)."""
    from pathlib import Path

    found = None
    for st in all_stages():
        if st.notebook == Path(notebook).name:
            found = st
    return found


def notebook_call(stage_name: str, namespace: dict, announce: bool = True):
    """See :func:`wsss_lib.stages.base.notebook_call` (imported lazily: ``import wsss_lib.stages``
    stays light)."""
    from wsss_lib.stages.base import notebook_call as _call

    return _call(stage_name, namespace, announce)


__all__ = ["ORDER", "all_stages", "get_stage", "notebook_call", "stage_of_notebook"]
