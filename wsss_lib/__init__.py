"""wsss_lib: weakly supervised semantic segmentation from image-level labels.

Backs the notebooks in ``notebooks/``: OAA (Jiang et al., ICCV 2019), OAA+, AMR (Qin et al.,
AAAI 2022) and the reproduction report's modifications, on PASCAL VOC 2012 or on the embedded
benchmark that :mod:`wsss_lib.data.synthetic` generates in VOC layout.
"""

__version__ = "0.1.0"
