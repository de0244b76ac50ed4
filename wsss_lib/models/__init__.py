"""Networks: backbones, the CAM classifier, AMM and AMR."""

from .backbones import BACKBONES, Backbone, build_backbone
from .cam import CAMNet, build_cam_net
from .official import load_official_checkpoint

__all__ = ["BACKBONES", "Backbone", "build_backbone", "CAMNet", "build_cam_net", "load_official_checkpoint"]
