"""What the training stages share: the resumable loop (:mod:`.loop`), the stage configs
(:mod:`.config`), the training set, inference and scoring (:mod:`.common`), the data a stage trains on
(:mod:`.data_setup`)."""
