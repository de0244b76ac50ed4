"""Executing a notebook in a kernel that cannot strand a finished cell.

papermill (through nbclient and jupyter_client) waits for a cell's reply with ``await
socket.poll(timeout)`` on an asyncio ZeroMQ socket, and by default with no timeout at all. That poll
is woken by the socket's edge-triggered file descriptor; when the edge is missed, the reply sits in
the socket and the wait goes on until the poll's own timeout fires (pyzmq then polls the socket for
real and finds it). Measured here (ipykernel 7.4.0 and 6.31.0 alike, jupyter_client 8.10, pyzmq 27.3):
a notebook of widget, plot, thread-output and progress-bar cells, executed again and again with a
20 s cell timeout, finished some runs in 4 s and others in 24, 44, 64 or 85 s: the kernel idle after
a widget cell and the next cell started exactly 20 s later. With no timeout (papermill's default)
the same miss never ends: a test or a batch point hangs with its kernel idle.

:class:`SteadyKernelManager` gives the kernel a client whose channels never wait longer than
:data:`POLL_SLICE_S` in one poll: a wait is a series of short polls, each ending in a real poll of
the socket, so a missed wake-up costs at most that slice and a wait with a timeout still ends at
its timeout. :func:`execute_notebook` is the one way this project executes a notebook with papermill.
"""

from __future__ import annotations

import os
import time
import typing as t
from queue import Empty

from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.channels import AsyncZMQSocketChannel
from jupyter_client.manager import AsyncKernelManager
from traitlets import DottedObjectName, Type

#: the longest a channel waits in one poll of its socket (seconds); a missed wake-up costs at most this
POLL_SLICE_S = 0.5

#: the kernels' own log level: their warnings (e.g. "running over TCP without encryption") would
#: fill every test and batch log
KERNEL_ARGS = ["--log-level=ERROR"]


class SlicedPollChannel(AsyncZMQSocketChannel):
    """A channel whose ``get_msg`` polls its socket in slices of at most :data:`POLL_SLICE_S`."""

    async def get_msg(self, timeout: float | None = None) -> dict[str, t.Any]:  # type: ignore[override]
        assert self.socket is not None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = POLL_SLICE_S if deadline is None else max(0.0, min(POLL_SLICE_S, deadline - time.monotonic()))
            if await self.socket.poll(int(left * 1000)):
                return await self._recv()
            if deadline is not None and time.monotonic() >= deadline:
                raise Empty


class SteadyKernelClient(AsyncKernelClient):
    """jupyter_client's asyncio kernel client with :class:`SlicedPollChannel` for every ZeroMQ
    channel (shell, iopub, stdin, control)."""

    shell_channel_class = Type(SlicedPollChannel)  # type: ignore[assignment]
    iopub_channel_class = Type(SlicedPollChannel)  # type: ignore[assignment]
    stdin_channel_class = Type(SlicedPollChannel)  # type: ignore[assignment]
    control_channel_class = Type(SlicedPollChannel)  # type: ignore[assignment]


class SteadyKernelManager(AsyncKernelManager):
    """jupyter_client's asyncio kernel manager whose clients are :class:`SteadyKernelClient`."""

    client_class = DottedObjectName(f"{__name__}.SteadyKernelClient", config=True)
    client_factory = Type(SteadyKernelClient, klass=AsyncKernelClient, config=True)


def execute_notebook(src: str | os.PathLike, dst: str | os.PathLike, parameters: dict,
                     cwd: str | os.PathLike | None = None) -> dict:
    """Execute notebook ``src`` with ``parameters`` into ``dst`` with papermill, on the ``python3``
    kernel under :class:`SteadyKernelManager` (quiet kernel log, no progress bar); returns the
    executed notebook. A failing cell raises papermill's ``PapermillExecutionError``."""
    import papermill as pm  # lazy: heavy: the Jupyter stack, only where a notebook is executed

    return pm.execute_notebook(str(src), str(dst), parameters=parameters, kernel_name="python3",
                               cwd=None if cwd is None else str(cwd), progress_bar=False,
                               extra_arguments=KERNEL_ARGS, kernel_manager_class=SteadyKernelManager)
