"""Utilities every layer may use: atomic files and checked torch loads (:mod:`.io`), the recorded
environment (:mod:`.environment`), the process group helpers (:mod:`.distributed`) and the
host-sync guard of the training step (:mod:`.sync_guard`), the package's paths (:mod:`.paths`)."""
