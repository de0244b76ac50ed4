"""The papers' formulas and the measures on attention maps, one function per equation.

:mod:`.attention` (OAA eqs. 1-2, multi-scale inference), :mod:`.accumulation` (fusion eqs. 5 and 10,
the gates, the OAA store that applies them on device), :mod:`.losses` (every loss), :mod:`.label_rules`
(attention to pseudo labels), :mod:`.metrics` and :mod:`.evaluation` (confusion, IoU, CAM mIoU),
:mod:`.drift` and :mod:`.diagnostics` (how attention moves and where it sits), :mod:`.crf`."""
