"""Speed benchmarks (ratios measured side by side): the OAA store and CAM inference
(:mod:`.bench`), every stage's training step (:mod:`.training`), the GPU check (:mod:`.gpu`)."""
