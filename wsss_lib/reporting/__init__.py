"""The reports: the papers' tables declared as data and their pages (:mod:`.tables`), the
benchmark's page (:mod:`.benchmark_page`)."""
