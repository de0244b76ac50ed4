"""Running experiments: the batch runner over papermill grids (:mod:`.batch`), one stage from the
command line (:mod:`.launch`), the main job behind ``make run`` (:mod:`.main`), finished points as
one table (:mod:`.results`)."""
