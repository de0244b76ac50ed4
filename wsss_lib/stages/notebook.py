"""How a notebook calls its stage: :func:`notebook_call` on the parameters cell's namespace.

Every parameter is written once (in that cell), the profile is resolved in one place
(:func:`~wsss_lib.runs.profile.resolve_profile`), names the notebook does not take are refused (the
same names the batch runner refuses: :func:`notebook_parameters`), and every value is validated
before any work.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from wsss_lib.engine.config import StageConfig
from wsss_lib.runs.folders import publish_point
from wsss_lib.runs.profile import Profile, resolve_profile
from wsss_lib.stages.base import NOTEBOOK_ARGS, RunPlan, Stage, execute_plan
from wsss_lib.stages.registry import all_stages, get_stage


@dataclass
class StageCall:
    """A notebook's stage call: the stage, its validated config, and the run arguments."""

    stage: Stage
    config: StageConfig
    profile: Profile
    run_args: dict
    upstream: dict
    params: dict

    @property
    def quick(self) -> bool:
        return self.profile.quick

    def plan(self, progress: bool = True) -> RunPlan:
        return self.stage.plan(quick=self.profile, progress=progress, **self.run_args, **self.upstream, **self.params)

    def run(self, progress: bool = True) -> Path:
        return execute_plan(self.plan(progress), progress)

    def publish(self, point_dir: str, run: Path) -> dict:
        """The run's metrics (plus the stage's per-point extras), into the batch point's folder if any."""
        return publish_point(point_dir, run, self.stage.point_metrics(self.config, run))

    def __str__(self) -> str:
        ups = ", ".join(f"{k}={v!r}" for k, v in self.upstream.items()) or "-"
        return (f"stage {self.stage.name} (profile {self.profile.name}); upstream: {ups}\n"
                f"run arguments: {self.run_args}\nconfig: {self.config}")


def notebook_stages(notebook: str) -> list[Stage]:
    """The stages a notebook runs (in pipeline order; notebook 05: pseudo labels, then segmentation)."""

    return [st for st in all_stages() if st.notebook == Path(notebook).name]


def notebook_parameters(notebook: str) -> tuple[str, ...]:
    """Every parameter name a stage notebook takes: its stages' names and :data:`NOTEBOOK_ARGS`."""
    names: dict[str, None] = {}
    for st in notebook_stages(notebook):
        names.update(dict.fromkeys(st.known_parameters()))
    return tuple(names) + NOTEBOOK_ARGS


#: IPython's own names in a notebook's namespace (never parameters)
_IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}
#: the first line of the cell papermill injects with the given parameters
PAPERMILL_HEADER = "# Parameters"
#: how every notebook's own parameters cell begins (tagged ``parameters``)
PARAMETERS_CELL_HEADER = "# Parameters (papermill)"


def _assigned(source: str) -> list[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    return [t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)]


def unknown_parameters(namespace: dict, known) -> list[str]:
    """The names given to a notebook (or a stage call's namespace) that it does not take.

    In a kernel, the given names are those of the cell papermill injected (its first line is
    ``# Parameters``), read from IPython's input history, so variables a user makes later are never
    mistaken for parameters; for a plain dict, every key holding a plain value (str, number, bool,
    list, dict, None) is a given name."""
    history = namespace.get("In")
    if isinstance(history, list):
        given = [n for cell in history if isinstance(cell, str) and cell.split("\n", 1)[0].strip() == PAPERMILL_HEADER
                 for n in _assigned(cell)]
    else:
        given = [k for k, v in namespace.items() if not k.startswith("_") and k not in _IPYTHON_NAMES
                 and isinstance(v, (str, int, float, bool, list, tuple, dict, type(None)))]
    return sorted(set(given) - set(known))


def check_parameters(namespace: dict, known=None, where: str = "this notebook") -> None:
    """Refuse names ``where`` does not take, naming them and the known ones (before any work).

    ``known=None`` (in a notebook kernel): the names the notebook's own parameters cell assigns
    (the cell whose first line starts with ``# Parameters (papermill)``)."""
    if known is None:
        history = namespace.get("In") or []
        known = [n for cell in history if isinstance(cell, str) and cell.startswith(PARAMETERS_CELL_HEADER)
                 for n in _assigned(cell)]
    bad = unknown_parameters(namespace, known)
    if bad:
        raise ValueError(f"unknown parameter(s) {bad} for {where}; known: {sorted(known)}")


def notebook_call(stage_name: str, namespace: dict, announce: bool = True) -> StageCall:
    """Build a stage call from a notebook's parameters cell (its ``globals()``), in one step.

    Refuses names the notebook does not take (naming them and the known ones), picks the run
    arguments, the stage's upstream arguments and its config fields by name (each parameter is
    written once, in the parameters cell; ``None`` = the default), resolves the profile
    (``WSSS_QUICK=1`` forces quick) and validates everything before any work: a bad value fails
    here, naming the parameter. When an upstream stage of this stage runs in the same notebook
    (notebook 05: pseudo labels before segmentation), its parameters come from the namespace too."""

    stage = get_stage(stage_name)
    check_parameters(namespace, notebook_parameters(stage.notebook), f"notebook {stage.notebook}")
    profile = resolve_profile(namespace.get("quick", False), announce=announce)
    run_args = {k: namespace[k] for k in ("data_root", "run_dir", "seed", "device") if k in namespace}
    ups = {k: namespace[k] for k in stage.upstream if namespace.get(k)}
    params = _stage_params(stage, namespace)
    for arg, field_name in stage.upstream_params_field.items():
        up = get_stage(stage.upstream[arg])
        if up.notebook == stage.notebook and arg not in ups and field_name not in params:
            params[field_name] = {**_stage_params(up, namespace),
                                  **{k: namespace[k] for k in up.upstream if namespace.get(k)}}
    cfg = stage.config(profile, seed=run_args.get("seed", 0), device=run_args.get("device", "auto"),
                       data_root=run_args.get("data_root", ""), **params)
    if profile.quick and announce and stage.quick_note:
        print(f"  {stage.name}: {stage.quick_note}")
    return StageCall(stage, cfg, profile, run_args, ups, params)


def _stage_params(stage: Stage, namespace: dict) -> dict:
    return {k: namespace[k] for k in stage.Config.field_names() if namespace.get(k) is not None}


__all__ = ["PAPERMILL_HEADER", "PARAMETERS_CELL_HEADER", "StageCall", "check_parameters", "notebook_call",
           "notebook_parameters", "notebook_stages", "unknown_parameters"]
