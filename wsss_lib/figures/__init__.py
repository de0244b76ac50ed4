"""Figures: overlays, attention and label maps with their colour bars and legends, the explorer
widgets (:mod:`.plots`)."""
