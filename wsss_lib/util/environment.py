"""The versions a result depends on, recorded next to it (``params.json``, ``reports/environment.json``),
and the one way an environment switch is read (:func:`env_flag`)."""

from __future__ import annotations

import os
import platform

import numpy as np

from wsss_lib import __version__

#: the words an on/off environment switch may be set to (case-insensitive); the empty string is unset
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def env_flag(name: str, default: bool = False) -> bool:
    """The on/off environment switch ``name`` (``WSSS_QUICK``, ``WSSS_SYNC_CHECK``...): one of
    :data:`TRUE_WORDS` or :data:`FALSE_WORDS` (any case); unset or empty gives ``default``; anything
    else is refused, naming the variable and the words it takes."""
    raw = os.environ.get(name, "")
    value = raw.strip().lower()
    if not value:
        return default
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise ValueError(f"environment variable {name}={raw!r} is invalid: expected {'/'.join(TRUE_WORDS)} (on), "
                     f"{'/'.join(FALSE_WORDS)} (off), or unset")


def environment_summary() -> dict:
    """Python, torch, torchvision, numpy, the platform, CPU threads and whether CUDA is there."""
    import torch  # lazy: heavy: this module stays importable without torch
    import torchvision  # lazy: heavy: this module stays importable without torchvision

    return {"wsss_lib": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": np.__version__,
            "platform": platform.platform(), "cpu_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available()}


__all__ = ["FALSE_WORDS", "TRUE_WORDS", "env_flag", "environment_summary"]
