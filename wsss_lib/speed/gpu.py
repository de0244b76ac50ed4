"""The GPU check: one prepared command for a machine with CUDA (``make bench-gpu``).

    python -m wsss_lib.speed.gpu [--out reports/bench_gpu.md] [--run full|quick|none] [--tf32 both|default|off] [--steps 20]

In one process, in this order, rewriting the report after each part (a run cut short by a time
limit still leaves what it measured):

1. the environment: device, its memory and compute capability, torch / CUDA / cuDNN / Python;
2. the CUDA fast-path tests (``tests/test_fast_path.py``) under ``WSSS_SYNC_CHECK=1``: every training
   stage's step under ``torch.cuda.set_sync_debug_mode("error")``;
3. a classifier + OAA run on the embedded benchmark with ``device="cuda"`` (profile ``full`` by
   default, seed 0: its CAM / OAA-MAX / OAA-AVE mIoU are comparable with the seed-0 values of
   ``reports/oaa.md``, which were computed on CPU), with its wall time; by default twice, with torch's
   TF32 defaults and with TF32 off (``--tf32``), to tell the device's arithmetic from the code;
4. the VOC-size benchmarks of :func:`wsss_lib.speed.bench.voc_benchmarks` (every stage's training step at
   VOC size, fp32 and bf16; batched CAM inference against the official loop; the OAA store's share).

It needs only torch, torchvision, numpy, pandas, matplotlib, pytest, pyyaml, scipy, tqdm and filelock
(what a bare GPU node typically has): no papermill, no Jupyter. On a machine without CUDA it says so,
writes nothing and exits 0. ``--device cpu --scale tiny`` rehearses every part on a CPU at toy sizes
(the tests do; it writes its report only where ``--out`` says).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy
import torch

from wsss_lib.speed.bench import bench_cam, bench_oaa, format_cam, format_oaa, voc_benchmarks
from wsss_lib.speed.training import bench_train, format_train
from wsss_lib.stages import get_stage
from wsss_lib.util.io import write_text
from wsss_lib.util.paths import REPO

FAST_PATH_TESTS = REPO / "tests" / "test_fast_path.py"
# What one part may take on an H100 before the whole check would overrun the 8 minutes it is sized for.
TEST_TIMEOUT_S = 240


def environment_lines(dev: torch.device) -> list[str]:
    """Device and versions, one Markdown bullet each."""

    lines = [f"- Python {platform.python_version()}, torch {torch.__version__}, numpy {numpy.__version__}"]
    try:
        import torchvision  # lazy: optional: absent on some machines (the except clause says what then)

        lines[0] += f", torchvision {torchvision.__version__}"
    except ImportError:
        lines[0] += ", torchvision missing"
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        lines += [f"- Device: {p.name}, {p.total_memory / 2**30:.1f} GiB, compute capability {p.major}.{p.minor}, "
                  f"{p.multi_processor_count} SMs",
                  f"- CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
                  f"bf16 supported: {torch.cuda.is_bf16_supported()}"]
    else:
        lines.append(f"- Device: CPU ({platform.processor() or platform.machine()}), "
                     f"{torch.get_num_threads()} torch threads (a rehearsal: no GPU figures)")
    return lines


def fast_path_tests(select: str | None = None, timeout_s: int = TEST_TIMEOUT_S) -> tuple[bool, str]:
    """Run the fast-path tests in a child process under ``WSSS_SYNC_CHECK=1``; ``(passed, summary)``.
    ``select`` is a pytest ``-k`` expression (the rehearsal picks one quick test)."""
    if not FAST_PATH_TESTS.exists():
        return False, f"`{FAST_PATH_TESTS}` not found (an installed package has no tests): not run"
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "--tb=short", "-p", "no:cacheprovider", "-o", "addopts=",
           str(FAST_PATH_TESTS)] + (["-k", select] if select else [])
    # no plugin autoloading: a bare GPU node has none, and this machine's (nbval, xdist) are not needed
    env = {**os.environ, "WSSS_SYNC_CHECK": "1", "WSSS_QUICK": "1", "MPLBACKEND": "Agg",
           "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return False, f"stopped after {timeout_s} s (timeout)"
    # progress bars are noise in a report: keep the lines that say what failed
    out = [ln for ln in (p.stdout + p.stderr).strip().splitlines() if "it/s]" not in ln]
    tail = [ln for ln in out if ln.strip()][-1:] or ["(no output)"]
    shown = "WSSS_SYNC_CHECK=1 python -m pytest -x -q tests/test_fast_path.py" + (f" -k {select!r}" if select else "")
    summary = f"`{shown}`: {tail[0].strip('= ')} ({time.perf_counter() - t0:.0f} s)"
    if p.returncode != 0:
        summary += "\n\n```\n" + "\n".join(out[-120:]) + "\n```"
    return p.returncode == 0, summary


def set_tf32(enabled: bool | None) -> tuple[bool, bool]:
    """Allow (True) or forbid (False) TF32 in cuDNN convolutions and CUDA matrix products; ``None``
    leaves torch's defaults. Returns the previous ``(cudnn, matmul)`` flags to restore."""
    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    if enabled is not None:
        torch.backends.cudnn.allow_tf32 = enabled
        torch.backends.cuda.matmul.allow_tf32 = enabled
    return before


def classifier_run(device: str, profile: str, runs: Path, tf32: bool | None = None) -> list[str]:
    """One classifier + OAA run (seed 0) on ``device``; its time and attention mIoU as Markdown lines.
    ``tf32``: None keeps torch's defaults (TF32 in cuDNN convolutions, not in matrix products),
    False computes every convolution and product in full fp32."""

    before = set_tf32(tf32)
    flags = f"cuDNN TF32 {torch.backends.cudnn.allow_tf32}, matmul TF32 {torch.backends.cuda.matmul.allow_tf32}"
    try:
        t0 = time.perf_counter()
        run = get_stage("classifier")(run_dir=str(runs), seed=0, device=device, quick=profile == "quick",
                                      progress=True)
        seconds = time.perf_counter() - t0
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before
    metrics = json.loads((Path(run) / "metrics.json").read_text())
    params = json.loads((Path(run) / "params.json").read_text()).get("params", {})
    keys = [k for k in ("cam_miou", "oaa_max_miou", "oaa_ave_miou", "cls_mAP_val") if k in metrics]
    shown = ", ".join(f"{k}={params[k]}" for k in ("data_root", "epochs", "gate", "gate_start_epoch") if k in params)
    return [f"Classifier + OAA, profile `{profile}`, seed 0, `device={device!r}`, {flags}: {seconds:.0f} s "
            f"(the embedded benchmark and the pretrained backbone made first where missing); {shown}.", "",
            "| " + " | ".join(keys) + " |", "|" + "---:|" * len(keys),
            "| " + " | ".join(f"{metrics[k]:.3f}" for k in keys) + " |", "",
            "Compare with seed 0 of `reports/oaa.md` (computed on CPU, same configuration): GPU kernels sum "
            "in another order, so agreement to a few thousandths is expected, not to the digit."]


def tiny_benchmarks(device: str) -> list[str]:
    """The same benchmark functions at toy sizes (a CPU rehearsal of :func:`wsss_lib.speed.bench.voc_benchmarks`)."""

    return [format_train(bench_train(device, "tiny", 48, 2, steps=1, warmup=1, num_classes=4,
                                     cases=("cam", "cam+oaa", "segmentation"), seg_network="small")),
            format_cam(bench_cam(device, 32, n_images=2, num_classes=4, loop_images=1, adv_iter=2, scales=(1.0,))),
            format_oaa(bench_oaa(device, steps=2, rounds=1, batch_size=2, image_size=48, num_classes=4, n_images=8))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m wsss_lib.speed.gpu", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("reports/bench_gpu.md"), help="the report (Markdown)")
    ap.add_argument("--device", default="cuda", help="cuda (default); cpu only for a rehearsal")
    ap.add_argument("--run", choices=("full", "quick", "none"), default="full",
                    help="the classifier + OAA run's profile (default full; none skips it)")
    ap.add_argument("--tf32", choices=("default", "off", "both"), default="both",
                    help="the classifier run with torch's TF32 defaults, with TF32 off, or both (default)")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per training case (default 20)")
    ap.add_argument("--scale", choices=("voc", "tiny"), default="voc", help="benchmark sizes (tiny: a rehearsal)")
    ap.add_argument("--tests-k", default=None, help="pytest -k expression for the fast-path tests (a rehearsal)")
    args = ap.parse_args(argv)
    if args.steps < 1:
        ap.error(f"--steps must be at least 1, got {args.steps}")
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print(f"bench-gpu: no CUDA device on this machine (torch {torch.__version__}, built for CUDA "
              f"{torch.version.cuda}); nothing measured, {args.out} left as it is.")
        return 0

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    parts = ["# GPU check (`make bench-gpu`)", "",
             f"Written by `python -m wsss_lib.speed.gpu` on {started}; each part is rewritten into this file "
             "as soon as it finishes.", "", "## Environment", "", *environment_lines(dev)]
    ok = True

    def flush(*new: str) -> None:
        parts.extend(new)
        write_text(args.out, "\n".join(parts) + "\n")
        print("\n".join(new), flush=True)

    flush()
    t0 = time.perf_counter()
    passed, summary = fast_path_tests(args.tests_k)
    ok &= passed
    flush("", "## Fast-path tests under sync debug mode", "",
          f"{'passed' if passed else 'FAILED'}: {summary}")
    if args.run != "none":
        settings = {"default": [None], "off": [False], "both": [None, False]}[args.tf32]
        if dev.type != "cuda":
            settings = [None]  # TF32 is a CUDA setting: a CPU rehearsal runs once
        for tf32 in settings:
            with tempfile.TemporaryDirectory(prefix="wsss-bench-gpu-runs-") as runs:
                try:
                    lines = classifier_run(args.device, args.run, Path(runs), tf32)
                except Exception as e:  # the report says what broke; the benchmarks still run
                    ok = False
                    lines = [f"FAILED: {type(e).__name__}: {e}"]
            title = {None: "torch's TF32 defaults", False: "TF32 off"}[tf32]
            flush("", f"## Classifier + OAA run ({title})", "", *lines)
    flush("", "## Benchmarks" + (" at VOC size" if args.scale == "voc" else " (toy sizes: a rehearsal)"))
    if args.scale == "voc":
        voc = voc_benchmarks(args.device, args.steps, emit=lambda part: flush("", *part.splitlines()))
        ok &= not any(part.startswith("FAILED") for part in voc)
    else:
        flush("", *"\n\n".join(tiny_benchmarks(args.device)).splitlines())
    flush("", f"Total: {time.perf_counter() - t0:.0f} s; {'every part passed' if ok else 'SOME PART FAILED (above)'}.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
