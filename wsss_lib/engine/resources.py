"""What a run cost the machine, recorded with its metrics so that a VOC-size run can be planned from
a small one: the checkpoint's bytes (in all and per training image) and the process's peak host
memory (resident set, in all and per training image).

The peak is the process's (``getrusage``: the largest resident set it has had so far), so in a
notebook kernel that made several runs it bounds this run's from above.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path


def peak_host_bytes() -> int:
    """The largest resident set this process has had, in bytes (Linux reports KiB, macOS bytes)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def resource_metrics(run: Path, images: int) -> dict:
    """``checkpoint_bytes`` (0 without a checkpoint), ``peak_host_bytes`` and both per training
    image (``images``: the images one epoch of the run trains on)."""
    ck = Path(run) / "checkpoint.pt"
    ck_bytes = ck.stat().st_size if ck.exists() else 0
    peak = peak_host_bytes()
    n = max(1, int(images))
    return {"checkpoint_bytes": float(ck_bytes), "checkpoint_bytes_per_image": ck_bytes / n,
            "peak_host_bytes": float(peak), "peak_host_bytes_per_image": peak / n}


__all__ = ["peak_host_bytes", "resource_metrics"]
