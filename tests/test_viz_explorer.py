"""Notebook 02's ipywidgets explorer: the class dropdown always shows a present class."""

import numpy as np
import torch

from wsss_lib.data import VOCLayout
from wsss_lib.stages.classifier import run_classifier_stage


def test_explorer_selects_a_present_class_for_every_image(tmp_path, quick_voc):
    from wsss_lib.figures.evolution import attention_explorer

    run = run_classifier_stage(run_dir=str(tmp_path / "run"), quick=True, progress=False)
    snaps = torch.load(run / "snapshots.pt", weights_only=False)
    layout = VOCLayout(quick_voc, "train")
    box = attention_explorer(snaps, layout)
    img_dd, cls_dd = box.children[0].children
    for j, i in enumerate(snaps["indices"]):
        img_dd.value = j
        present = set(np.flatnonzero(layout.labels[i]).tolist())
        assert cls_dd.value in present, (layout.ids[i], cls_dd.value, present)
        assert {v for _, v in cls_dd.options} == present
