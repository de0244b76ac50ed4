"""The training engine's data loader: one loader for the whole run, whose workers persist across
epochs (no worker start-up per epoch), each epoch in its own order, and a resumed run continuing
where it stopped."""

from __future__ import annotations

import os

import torch

from wsss_lib.engine.loop import LoopConfig, epoch_order, fit


class _Pids(torch.utils.data.Dataset):
    """Eight 8 x 8 images; each sample says which process loaded it."""

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return {"image": torch.full((3, 8, 8), i, dtype=torch.uint8), "label": torch.tensor([float(i % 2)]),
                "index": i, "id": f"{i}:{os.getpid()}"}


def _fit(tmp_path, epochs, seen, stop=None):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 1, 1), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def step(b):
        seen.append((b.epoch, [s.split(":")[0] for s in b.ids], {s.split(":")[1] for s in b.ids}))
        return torch.nn.functional.binary_cross_entropy_with_logits(b.model(b.views), b.labels)

    return fit(model, opt, "poly", _Pids(), LoopConfig(epochs, 4, 0, 8, num_workers=1), tmp_path, step,
               progress=False, stop_after_steps=stop)


def test_loader_workers_persist_across_epochs_and_each_epoch_keeps_its_order(tmp_path):
    seen = []
    _fit(tmp_path, 3, seen)
    pids = set().union(*(p for _, _, p in seen))
    assert len(pids) == 1 and os.getpid() not in {int(p) for p in pids}  # one worker process for all epochs
    for e in range(3):
        got = [int(i) for ep, ids, _ in seen if ep == e for i in ids]
        assert got == epoch_order(8, 0, e)


def test_a_resumed_run_continues_mid_epoch_with_its_order(tmp_path):
    first, second = [], []
    try:
        _fit(tmp_path, 2, first, stop=3)  # stops after step 3 of 4 (epoch 2, step 1)
    except Exception:  # TrainingInterrupted: the checkpoint is written
        pass
    _fit(tmp_path, 2, second)
    full = epoch_order(8, 0, 0) + epoch_order(8, 0, 1)
    resumed = [int(i) for _, ids, _ in second for i in ids]
    assert 0 < len(resumed) < len(full) and resumed == full[-len(resumed):]  # the rest of the run, in its order
    assert second[0][0] == 1  # it resumed inside epoch 2
