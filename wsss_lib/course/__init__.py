"""The course: the exercises' checks (:mod:`.checks`), nbgrader's release and grading demo
(:mod:`.grading`), what the introduction notebook loads and draws (:mod:`.intro`)."""
