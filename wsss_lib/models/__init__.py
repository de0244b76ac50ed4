"""Networks: backbones, the CAM classifier, AMM and AMR."""

