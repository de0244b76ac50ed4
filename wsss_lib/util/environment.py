"""The versions a result depends on, recorded next to it (``params.json``, ``reports/environment.json``)."""

from __future__ import annotations

import platform


def environment_summary() -> dict:
    """Python, torch, torchvision, numpy, the platform, CPU threads and whether CUDA is there."""
    import numpy as np
    import torch
    import torchvision

    from wsss_lib import __version__

    return {"wsss_lib": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": np.__version__,
            "platform": platform.platform(), "cpu_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available()}


__all__ = ["environment_summary"]
