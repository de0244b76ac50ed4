"""The stages of the suite, in pipeline order, by name (as IRN's ``run_sample.py`` lists its steps).

Each stage is one module of :mod:`wsss_lib.stages` with a :class:`~wsss_lib.stages.base.Stage`
subclass and its config. Adding a stage = its module (config, upstream stages, outputs, its own
lines) + its name in :data:`ORDER` + its notebook; the registry tests, the fast-path test and the
training benchmark then cover it.
"""

from __future__ import annotations

import importlib
from pathlib import Path

#: stage name -> module under wsss_lib.stages, in pipeline order
ORDER = ("classifier", "evolution", "oaa_plus", "amr", "pseudo_labels", "segmentation")


def get_stage(name: str):
    """The stage object registered under ``name`` (its module's ``STAGE``)."""
    if name not in ORDER:
        raise KeyError(f"no stage {name!r}; stages: {', '.join(ORDER)}")
    return importlib.import_module(f"wsss_lib.stages.{name}").STAGE


def all_stages() -> list:
    return [get_stage(n) for n in ORDER]


def training_stages() -> list:
    """The stages that train a network with the shared engine (every
    :class:`~wsss_lib.stages.training.TrainingStage`: its ``trains`` is True)."""
    return [st for st in all_stages() if st.trains]


def stage_of_notebook(notebook: str):
    """The stage a notebook runs: its last stage in :data:`ORDER` when it runs several (notebook 05:
    pseudo labels, then segmentation); ``None`` for notebooks that run no stage (the batch notebook)."""
    found = None
    for st in all_stages():
        if st.notebook == Path(notebook).name:
            found = st
    return found


def display_name(source: str) -> str:
    """How tables and figures name an attention source, as the stage that writes it declares
    (:attr:`~wsss_lib.stages.base.Stage.source_names`): ``oaa_max`` -> ``OAA-MAX``, ``amr_xi0.5`` ->
    ``AMR (xi 0.5)``; unknown names pass through."""
    for st in all_stages():
        name = st.display_name(source)
        if name is not None:
            return name
    return source


__all__ = ["ORDER", "all_stages", "display_name", "get_stage", "stage_of_notebook", "training_stages"]
