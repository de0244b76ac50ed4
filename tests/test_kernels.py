"""The kernel client the project executes notebooks with: a missed socket wake-up costs a poll slice,
not the rest of the run."""

from __future__ import annotations

import asyncio
import time
from queue import Empty

import pytest
from jupyter_client.channels import AsyncZMQSocketChannel

from wsss_lib.experiments import kernels


class _MissedWakeSocket:
    """A socket holding a reply whose wake-up was missed: a poll with no timeout never returns (the
    edge that would end it has gone), a poll with a timeout finds the reply when its timeout ends
    (pyzmq then polls the socket for real). ``ready=False``: nothing ever arrives."""

    def __init__(self, ready: bool = True):
        self.ready = ready
        self.polls: list[int | None] = []

    async def poll(self, timeout_ms=None):
        self.polls.append(timeout_ms)
        if timeout_ms is None:
            await asyncio.Event().wait()  # forever
        await asyncio.sleep(timeout_ms / 1000)
        return 1 if self.ready else 0


def _channel(cls, socket):
    channel = cls.__new__(cls)  # the socket is a stand-in: skip the asyncio-socket check of __init__
    channel.socket = socket

    async def _recv(**kwargs):
        return {"msg_type": "execute_reply"}

    channel._recv = _recv
    return channel


def test_a_reply_whose_wake_up_was_missed_is_read_within_a_poll_slice():
    async def go(cls):
        return await asyncio.wait_for(_channel(cls, _MissedWakeSocket()).get_msg(timeout=None), 3)

    t0 = time.monotonic()
    assert asyncio.run(go(kernels.SlicedPollChannel)) == {"msg_type": "execute_reply"}
    assert time.monotonic() - t0 < 2 * kernels.POLL_SLICE_S + 1
    with pytest.raises(asyncio.TimeoutError):  # jupyter_client's own channel waits on (papermill's default: forever)
        asyncio.run(go(AsyncZMQSocketChannel))


def test_a_wait_with_a_timeout_ends_at_its_timeout_in_slices():
    socket = _MissedWakeSocket(ready=False)
    channel = _channel(kernels.SlicedPollChannel, socket)
    t0 = time.monotonic()
    with pytest.raises(Empty):
        asyncio.run(channel.get_msg(timeout=1.2))
    assert 1.1 < time.monotonic() - t0 < 2.5
    assert len(socket.polls) >= 3 and max(socket.polls) <= kernels.POLL_SLICE_S * 1000  # 0.5 + 0.5 + 0.2 s


def test_the_manager_gives_every_zeromq_channel_the_sliced_poll():
    kc = kernels.SteadyKernelManager(kernel_name="python3").client()
    assert isinstance(kc, kernels.SteadyKernelClient)
    for name in ("shell", "iopub", "stdin", "control"):
        assert getattr(kc, f"{name}_channel_class") is kernels.SlicedPollChannel, name


def test_nbgrader_grades_the_course_with_the_same_kernel_manager():
    from pathlib import Path

    from traitlets.config.loader import PyFileConfigLoader
    from traitlets.utils.importstring import import_item

    course = Path(__file__).resolve().parents[1] / "course"
    config = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
    assert import_item(config.ExecutePreprocessor.kernel_manager_class) is kernels.SteadyKernelManager
