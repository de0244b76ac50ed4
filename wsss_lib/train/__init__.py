"""Training loops, one per stage, over one shared engine (:mod:`wsss_lib.train.engine`)."""
