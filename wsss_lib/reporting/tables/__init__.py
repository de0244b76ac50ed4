"""The papers' tables, declared as data and rendered from the batch runner's results.

- :mod:`.core`: rows as stage calls (their runs found by planned identity), columns, aggregation
  that refuses mixed settings, rendering with the profile and code the rows came from;
- :mod:`.oaa`: the OAA paper's tables (Table 2 as CAM mIoU and as segmentation mIoU, Table 3, the
  gate variants, the setting comparison); :mod:`.amr`: the AMR reproduction report's (Tables 1, 2,
  the ablation);
- :mod:`.pages`: the report pages (tables, figures, prose from templates filled with config values);
- :mod:`.readme`: the synced table blocks of the README and the docs pages, copied from the rendered tables.
"""

from __future__ import annotations

from wsss_lib.reporting.tables.core import Column, Row, SettingMismatch, Table, render, runs_of, values
from wsss_lib.reporting.tables.pages import ALL_TABLES, FIGURES, describe, write_reports

__all__ = ["ALL_TABLES", "Column", "FIGURES", "Row", "SettingMismatch", "Table", "describe", "render", "runs_of", "values",
           "write_reports"]
