"""The stages of the suite: the registry (:mod:`.registry`: :data:`ORDER`, :func:`get_stage`), the one
stage interface (:mod:`.base`), how a notebook calls its stage (:mod:`.notebook`), and one module
per stage."""

from __future__ import annotations

from wsss_lib.stages.notebook import notebook_call
from wsss_lib.stages.registry import ORDER, all_stages, display_name, get_stage, stage_of_notebook, training_stages

__all__ = ["ORDER", "all_stages", "display_name", "get_stage", "notebook_call", "stage_of_notebook", "training_stages"]
