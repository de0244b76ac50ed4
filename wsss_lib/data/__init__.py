"""Data: the embedded benchmark generator and the VOC-layout reader."""

from wsss_lib.data.spec import CLASS_NAMES, DEFAULT_SPEC, PARTS2_SPEC, BenchmarkSpec
from wsss_lib.data.synthetic import ensure_benchmark, generate_benchmark
from wsss_lib.data.voc import DataError, VOCLayout, VOCSegDataset, resolve_voc_root

__all__ = ["CLASS_NAMES", "DEFAULT_SPEC", "PARTS2_SPEC", "BenchmarkSpec", "ensure_benchmark",
           "generate_benchmark", "DataError", "VOCLayout", "VOCSegDataset", "resolve_voc_root"]
