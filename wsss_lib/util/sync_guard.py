"""No host synchronisation inside a training step: checked, on CUDA and on CPU.

On CUDA, :func:`no_host_sync` turns on ``torch.cuda.set_sync_debug_mode("error")``: any operation
that makes the host wait for the GPU (``.item()``, ``nonzero()``, a device-to-host copy, boolean
mask indexing...) raises. On CPU nothing ever waits, so the same code paths are checked by
:class:`HostSyncGuard`, a ``TorchFunctionMode`` that refuses the tensor operations that would
synchronise on a GPU: reading values into Python (``item``, ``tolist``, ``bool``/``int``/``float``
of a tensor, ``numpy``, ``cpu``), and operations whose output size depends on the data
(``nonzero``, ``masked_select``, ``unique``, boolean-mask indexing, one-argument ``where``), and
the host-to-device copies of Python values that CUDA makes synchronously (``torch.tensor(list)``,
``x[index_tensor] = 0.0``: ``index_fill_`` / ``torch.full`` are the copy-free forms). It sees
the calls made by our code (the OAA store, the recorders, the losses), not those inside torch's
own C++ kernels, which the CUDA mode covers when a GPU is there. A copy to a device
(``x.to(device)``, ``x.cuda()``) must say ``non_blocking=True``: from pinned memory it then does not
wait, where a plain one does (on CPU both are no-ops, so the guard reads the call, not the memory).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch.overrides import TorchFunctionMode

_T = torch.Tensor
_SYNCING = {_T.item, _T.tolist, _T.nonzero, torch.nonzero, torch.argwhere, _T.argwhere, _T.__bool__, _T.__int__,
            _T.__float__, _T.__index__, _T.cpu, _T.numpy, torch.masked_select, _T.masked_select, torch.unique,
            _T.unique, torch.unique_consecutive, _T.unique_consecutive}
_INDEXING = {_T.__getitem__, _T.__setitem__}
_FROM_PYTHON = {torch.tensor, torch.as_tensor}
_COPIES = {_T.to, _T.cuda}


def _names_a_device(func, args, kwargs) -> bool:
    """``x.to(device)`` / ``x.to("cuda")`` / ``x.cuda()``: a copy to a device (a dtype or a tensor alone is not)."""
    if func is _T.cuda:
        return True
    given = list(args[1:2]) + [kwargs.get("device")]
    return any(isinstance(a, torch.device) or (isinstance(a, str) and a.split(":")[0] in ("cpu", "cuda", "mps"))
               for a in given)


class HostSyncError(RuntimeError):
    """A tensor operation that would make the host wait for the GPU, inside a guarded region."""


def _has_bool_index(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in items)


def _has_tensor_index(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, torch.Tensor) for i in items)


def _name(func) -> str:
    return getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)


class HostSyncGuard(TorchFunctionMode):
    """Raise :class:`HostSyncError` on tensor operations that synchronise the host with a GPU."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _SYNCING:
            raise HostSyncError(f"{_name(func)} inside the training step: on a GPU it waits for the device")
        if func in _INDEXING and len(args) > 1 and _has_bool_index(args[1]):
            raise HostSyncError("boolean-mask indexing inside the training step: its size depends on the data "
                                "(a device-to-host read on a GPU); use torch.where or a fixed-size index")
        if func is _T.__setitem__ and len(args) > 2 and isinstance(args[2], (bool, int, float)) \
                and _has_tensor_index(args[1]):
            raise HostSyncError("x[index_tensor] = <Python number> inside the training step: on a GPU the number is "
                                "copied to the device synchronously; use index_fill_ (or a device tensor)")
        if func in _FROM_PYTHON and args and not isinstance(args[0], torch.Tensor):
            raise HostSyncError(f"torch.{func.__name__}(<Python data>) inside the training step: on a GPU it is a synchronous "
                                "host-to-device copy; make constants with torch.full / outside the step")
        if func in _COPIES and not kwargs.get("non_blocking", False) and _names_a_device(func, args, kwargs):
            raise HostSyncError(f"{_name(func)}(<device>) without non_blocking=True inside the training step: on a GPU "
                                "a host tensor's copy waits for the device; copy pinned batches with non_blocking=True")
        if func is torch.where and len(args) + len(kwargs) == 1:
            raise HostSyncError("one-argument torch.where inside the training step (it is nonzero())")
        return func(*args, **kwargs)


@contextmanager
def no_host_sync(device: torch.device, enabled: bool = True) -> Iterator[None]:
    """Inside the block, host synchronisation raises (CUDA: torch's sync debug mode; CPU:
    :class:`HostSyncGuard`). ``enabled=False``: nothing is checked."""
    if not enabled:
        yield
        return
    if device.type == "cuda":
        before = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode("error")
        try:
            yield
        finally:
            torch.cuda.set_sync_debug_mode(before)
    else:
        with HostSyncGuard():
            yield


__all__ = ["HostSyncError", "HostSyncGuard", "no_host_sync"]
