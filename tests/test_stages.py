"""The one stage interface: notebook calls (each parameter once, validated before any work), the
upstream resolver, a new stage written as one small class, and the fusion registry."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from wsss_lib.formulas import accumulation
from wsss_lib.formulas.accumulation import FUSION_SOURCES, FUSIONS, Fusion, OAAStore
from wsss_lib.runs.folders import write_metrics
from wsss_lib.stages import ORDER, get_stage, notebook_call
from wsss_lib.runs.profile import resolve_profile
from wsss_lib.stages.base import Stage, Upstream, plan_upstream
from wsss_lib.engine.config import StageConfig
from wsss_lib.stages import display_name

Q = dict(seed=0, quick=True, progress=False)


def test_registry_lists_every_stage_with_its_notebook():
    stages = [get_stage(n) for n in ORDER]
    assert [s.name for s in stages] == list(ORDER)
    assert all(s.notebook.endswith(".ipynb") and s.main_metrics for s in stages)
    with pytest.raises(KeyError, match="no stage 'crf'"):
        get_stage("crf")


def test_notebook_call_reads_each_parameter_once_and_validates(monkeypatch, capsys):
    monkeypatch.delenv("WSSS_QUICK", raising=False)
    ns = {"seed": 1, "device": "cpu", "quick": False, "data_root": "", "run_dir": "", "point_dir": "x",
          "variant": "AMR", "epochs": None, "w_cps": 0.5, "xi": [0.3, 0.7]}
    call = notebook_call("amr", ns)
    assert call.config.variant == "AMR" and call.config.w_cps == 0.5 and call.config.xi == (0.3, 0.7)
    assert call.config.epochs == type(call.config)().epochs  # None = the stage's default
    assert call.run_args == {"seed": 1, "device": "cpu", "data_root": "", "run_dir": ""} and not call.quick
    with pytest.raises(ValueError, match=r"parameter seed='abc' is invalid: expected an integer >= 0"):
        notebook_call("amr", {**ns, "seed": "abc"})
    with pytest.raises(ValueError, match=r"parameter crop_size='a' is invalid"):
        notebook_call("oaa_plus", {"seed": 0, "crop_size": "a"})
    with pytest.raises(ValueError, match=r"parameter threshold=1.5 is invalid"):
        notebook_call("evolution", {"seed": 0, "threshold": 1.5})
    # quick: the parameter, or WSSS_QUICK=1 forcing it (said in the output)
    monkeypatch.setenv("WSSS_QUICK", "1")
    call = notebook_call("classifier", {"seed": 0, "quick": False})
    assert call.quick and call.config.epochs == 6  # the quick classifier's (the other stages': 2)
    assert "forced by WSSS_QUICK" in capsys.readouterr().out
    with pytest.raises(ValueError, match="parameter quick='yes'"):
        resolve_profile("yes")
    # a name the notebook does not take is refused, naming it and the known ones
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['sed', 'unrelated'\] for notebook 04_train_amr.ipynb; "
                                         r"known: .*'seed'"):
        notebook_call("amr", {**ns, "sed": 0, "unrelated": 3})


def test_unknown_config_parameter_is_refused_with_the_known_names():
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['epoch'\] for ClassifierConfig; known: .*epochs"):
        get_stage("classifier")(epoch=3, **Q)


def test_upstream_resolver_says_what_is_missing(tmp_path, quick_voc):
    run = get_stage("classifier")(**Q)
    assert plan_upstream("oaa_run", Upstream("classifier", str(run))) == run
    assert plan_upstream("oaa_run", Upstream("classifier", run.name)) == run  # by identity
    with pytest.raises(ValueError, match="is a run of stage 'classifier', not of stage 'amr'"):
        plan_upstream("init_from", Upstream("amr", str(run)))
    half = tmp_path / "oaa-half"
    half.mkdir()
    (half / "params.json").write_text((run / "params.json").read_text())
    with pytest.raises(FileNotFoundError, match=r"not a finished classifier run: attention/cam.pt.*metrics.json.*missing"):
        plan_upstream("oaa_run", Upstream("classifier", str(half)))
    with pytest.raises(FileNotFoundError, match=r"oaa_run='nowhere': no run folder"):
        plan_upstream("oaa_run", Upstream("classifier", "nowhere"))


@dataclasses.dataclass
class MassConfig(StageConfig):
    source: str = "oaa_max"

    def validate(self):
        self.check("source", self.source in FUSION_SOURCES, f"one of {sorted(FUSION_SOURCES)}")
        return self


class MassStage(Stage):
    """A new stage in a few lines: the mean attention mass of a classifier run's source."""

    name = prefix = "mass"
    Config = MassConfig
    upstream = {"oaa_run": "classifier"}

    def execute(self, ctx):
        src = torch.load(ctx.upstream["oaa_run"] / "attention" / f"{ctx.cfg.source}.pt", weights_only=False)
        write_metrics(ctx.out, {"mass": float(src["maps"].float().mean())})


def test_a_new_stage_is_one_small_class(quick_voc):
    stage = MassStage()
    out = stage(source="oaa_ave", **Q)  # its upstream (the classifier run of seed 0) is made on demand
    info = json.loads((out / "params.json").read_text())
    assert info["stage"] == "mass" and info["params"]["oaa_run"].startswith("classifier-")
    assert info["params"]["source"] == "oaa_ave" and "code_digest" in info
    assert json.loads((out / "metrics.json").read_text())["mass"] > 0
    assert stage(source="oaa_ave", **Q) == out  # the same parameters find the same finished run
    assert stage(source="oaa_max", **Q) != out
    with pytest.raises(ValueError, match="parameter source='cam' is invalid"):
        stage(source="cam", **Q)


def test_fusion_registry_drives_the_store_and_the_source_names(monkeypatch):
    assert FUSION_SOURCES == {"oaa_max": "OAA-MAX", "oaa_ave": "OAA-AVE"}
    assert all(display_name(s) == label for s, label in FUSION_SOURCES.items())
    assert display_name("amr_xi0.5") == "AMR (xi 0.5)" and display_name("oaa_plus") == "OAA+"
    # a fusion added to the registry is maintained by the store without touching it
    fmin = Fusion("min", "OAA-MIN", "ours", lambda M, A, V, first, t: torch.where(
        first, A * V, torch.where(V, torch.minimum(M, A), M)))
    monkeypatch.setitem(accumulation.FUSIONS, "min", fmin)
    st = OAAStore(["a"], torch.tensor([[1]]), (1, 2), gate="all")
    for a in ([0.2, 0.8], [0.6, 0.4]):
        st.update(torch.tensor([0]), torch.tensor([[[a]]]), None, torch.zeros(1, 1), torch.ones(1, 1), 0)
    torch.testing.assert_close(st.attention_source("min")["maps"], torch.tensor([[[0.2, 0.4]]]))
    torch.testing.assert_close(st.attention_source("max")["maps"], torch.tensor([[[0.6, 0.8]]]))
    torch.testing.assert_close(st.dense("max", [0]), torch.tensor([[[[0.6, 0.8]]]]))  # images x classes x H x W
    with pytest.raises(ValueError, match="fusion must be one of max, ave, min"):
        st.attention_source("median")
    assert set(FUSIONS) == {"max", "ave", "min"}


@pytest.mark.parametrize("name", ORDER)
def test_every_registered_stage_has_its_notebook_a_parameters_cell_of_its_names_and_display_names(name):
    """What the registry promises for each stage: its notebook exists, its parameters cell names only
    parameters the stage (or the notebook's other stage) takes, and every source it writes has a name
    tables and figures use (declared by the stage, not kept by the figures)."""
    from pathlib import Path

    from wsss_lib.experiments.points import notebook_defaults
    from wsss_lib.stages.notebook import notebook_parameters

    st = get_stage(name)
    nb = Path(__file__).parents[1] / "notebooks" / st.notebook
    assert nb.is_file(), f"stage {name}: notebook {st.notebook} is missing"
    unknown = set(notebook_defaults(st.notebook)) - set(notebook_parameters(st.notebook))
    assert not unknown, f"notebook {st.notebook}'s parameters cell names {sorted(unknown)}, which no stage of it takes"
    assert all(st.display_name(s) for s in st.sources), f"stage {name} declares no display name for some source"
