"""Networks: backbones, the CAM classifier, AMM and AMR."""

from wsss_lib.models.backbones import BACKBONES, Backbone, build_backbone
from wsss_lib.models.cam import CAMNet, build_cam_net
from wsss_lib.models.official import load_official_checkpoint

__all__ = ["BACKBONES", "Backbone", "build_backbone", "CAMNet", "build_cam_net", "load_official_checkpoint"]
