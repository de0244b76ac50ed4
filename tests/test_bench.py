"""The benchmark code runs and reports its figures (tiny sizes; no timing is asserted)."""

import pytest

from wsss_lib.speed.bench import bench_cam, bench_oaa, format_cam, format_memory, format_oaa, store_memory_table

import torch


def test_bench_oaa_reports_three_variants_and_ratios():
    res = bench_oaa(steps=3, rounds=1, batch_size=4, image_size=32, n_images=12)
    assert set(res["median_ms"]) == {"plain", "oaa", "oaa_eval", "png"}
    assert res["oaa_over_plain"] > 0 and res["png_over_plain"] > 0
    assert "(b) + OAA store" in format_oaa(res)


def test_store_memory_at_voc_size():
    rows = store_memory_table(sizes=(41,), dtypes=(torch.float16,))
    # 15873 maps x 41 x 41 x 2 bytes x 2 (MAX and AVE)
    assert rows[0]["slots"] == 15873 and rows[0]["MAX+AVE MiB"] == round(2 * 15873 * 41 * 41 * 2 / 2**20, 1)
    assert "train_aug" in format_memory()


def test_bench_cam_compares_equal_outputs():
    res = bench_cam(image_size=32, n_images=3, loop_images=2, adv_iter=2, scales=(1.0, 0.5), num_classes=4)
    for key in ("batched_images_per_s", "loop_images_per_s", "speedup"):
        assert res[key] > 0  # figures are reported; their values are never asserted (timing)
    assert res["max_abs_diff"] < 1e-4  # the two methods made the same maps
    assert "Speed-up on the same output" in format_cam(res)


def test_train_benchmark_runs_every_stage_step_and_reports_them():
    from wsss_lib.speed.training import CASES, bench_train, format_train

    res = bench_train("cpu", "tiny", image_size=32, batch_size=2, steps=1, warmup=1, num_classes=4,
                      seg_network="small")
    assert [r["case"] for r in res["rows"]] == list(CASES)  # fp32 only on CPU (bf16 is the GPU path)
    assert all(r["images_per_s"] > 0 and r["precision"] == "fp32" for r in res["rows"])
    text = format_train(res)
    assert "| amr | fp32 | 32 | 2 |" in text and "OAA store's share" in text


def test_the_training_benchmark_times_each_stages_own_step(monkeypatch):
    # a change to a stage's step is what the benchmark runs: wrap each stage's step and count the calls
    from wsss_lib.speed.training import CASE_STAGE, bench_train
    from wsss_lib.stages import get_stage

    calls = {}
    for name in set(CASE_STAGE.values()):
        cls = type(get_stage(name))
        real = cls.training_step

        def counted(self, ctx, model, _real=real, _name=name):
            step, state = _real(self, ctx, model)

            def wrapped(b):
                calls[_name] = calls.get(_name, 0) + 1
                return step(b)
            return wrapped, state
        monkeypatch.setattr(cls, "training_step", counted)
    res = bench_train("cpu", "tiny", 32, 2, steps=1, warmup=1, num_classes=3, seg_network="small", n_images=12)
    assert {r["case"] for r in res["rows"]} == set(CASE_STAGE)
    assert calls == {"classifier": 2, "oaa_plus": 2, "amr": 2, "segmentation": 2}  # cam+oaa, OAA+, AMR, seg: warm-up + 1


def test_variant_costs_time_every_stage_on_version_1_and_the_default(tmp_path):
    from wsss_lib.speed import bench

    out = tmp_path / "costs.md"
    assert bench.main(["variants", "--quick", "--out", str(out)]) == 0
    md = out.read_text()
    for case in ("cam+oaa", "oaa_plus", "amr", "segmentation"):
        assert f"| {case}" in md
    assert "v1 (64 px), images/s" in md  # the quick profile's default is version 1: one column, no ratio


def test_make_cam_flops_follow_the_official_schedule_and_scales():
    """The make_cam FLOP bound of reports/voc_budget.md: each branch's count is one image-and-mirror
    forward and input backward per climbing iteration, at each scale's size: about (sum over the
    official schedule of iterations x scale^2) times the count at scale 1."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from wsss_lib.engine.adversarial_cam import OFFICIAL_SCALES, ClimbSettings
    from wsss_lib.models.amr import build_amr
    from wsss_lib.speed.voc_budget import make_cam_flops

    size = (96, 128)
    got = make_cam_flops(size)
    with torch.device("meta"):
        net = build_amr("resnet50", 20, None, output_stride=16, placement="bottleneck", head_convs=0, form="official")
    net.eval().requires_grad_(False)
    x = torch.zeros(2, 3, *size, device="meta", requires_grad=True)
    with FlopCounterMode(display=False) as fc:
        net.spotlight(x).relu().mean().backward()
    weight = sum(iters * OFFICIAL_SCALES[idx] ** 2 for idx, iters, _ in ClimbSettings(adv_iter=27).schedule())
    assert weight == pytest.approx(13 * 0.25 + 27 * (1 + 0.75 ** 2 + 1.25 ** 2 + 1.5 ** 2 + 1.75 ** 2 + 4))
    assert got["spotlight"] == pytest.approx(weight * fc.get_total_flops(), rel=0.1)
    assert got["compensation"] == pytest.approx(got["spotlight"], rel=0.01)  # the AMMs cost little


def test_kernel_waits_runs_both_clients_on_its_notebook_and_reports_them(tmp_path):
    from wsss_lib.speed.kernel_waits import main

    out = tmp_path / "kernel_waits.md"
    assert main(["--runs", "1", "--cells", "4", "--out", str(out)]) == 0
    text = out.read_text()
    assert "papermill's (jupyter_client's AsyncKernelClient) | 1 |" in text and "(SteadyKernelManager) | 1 |" in text
    assert "Total time, papermill's client over the project's" in text  # figures reported, never asserted
