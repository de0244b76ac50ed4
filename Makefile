# wsss-notebooks: the two commands of the README are `make run` and `make test`.
# Both create the virtual environment from requirements.lock when it is missing or out of date.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.wsss-installed

# Extra arguments for the main job, e.g. `make run ARGS="-j 1"` or `make run ARGS="--quick"`.
ARGS ?=

.PHONY: run test test-fast env clean-runs segmentation setting candidates bench-gpu course grade-demo voc voc-rehearsal

env: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python >= 3.10 needed, found " + sys.version' 
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	sed -n 's/^# no-deps: \([^ ]*\).*/\1/p' requirements.lock | xargs -r $(BIN)/python -m pip install --quiet --no-deps
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 > /dev/null
	$(BIN)/python -m wsss_lib.models.weights mobilenet_v2 > /dev/null  # ImageNet MobileNetV2 into $$TORCH_HOME, checked
	touch $(STAMP)

# Command 1: the main job on the embedded benchmark: the grids of notebooks/grids/ through the batch
# runner (2 points at a time), then notebook 07 renders the tables and figures into reports/.
run: $(STAMP)
	$(BIN)/python -m wsss_lib.experiments.main $(ARGS)

# PASCAL VOC 2012 with the papers' recipes (docs/voc.md): make voc VOC=/data/VOCdevkit
# SBD=/data/benchmark_RELEASE/dataset SALIENCY=/data/saliency [ARGS="-j 1"] -> reports/voc/voc.md.
# Inputs (folders, ImageNet weights) are checked before anything runs.
VOC ?=
SBD ?=
SALIENCY ?=
voc: $(STAMP)
	@test -n "$(VOC)" || { echo "make voc needs VOC=/path/to/VOCdevkit (and SBD=..., SALIENCY=...): see docs/voc.md" >&2; exit 2; }
	$(BIN)/python -m wsss_lib.experiments.main --data "$(VOC)" $(if $(SBD),--sbd "$(SBD)") $(if $(SALIENCY),--saliency "$(SALIENCY)") $(ARGS)

# The VOC job at smoke size on a VOC-size rehearsal folder the suite writes (a few dozen images, a few
# CPU minutes): runs/rehearsal/ and reports/voc-quick/
REHEARSAL ?= runs/rehearsal
voc-rehearsal: $(STAMP)
	test -d "$(REHEARSAL)" || $(BIN)/python -m wsss_lib.data.rehearsal "$(REHEARSAL)" --fraction 0.003
	$(BIN)/python -m wsss_lib.experiments.main --quick --data "$(REHEARSAL)/VOCdevkit" --sbd "$(REHEARSAL)/benchmark_RELEASE/dataset" --saliency "$(REHEARSAL)/saliency" $(ARGS)

# The main job plus the 3-seed segmentation grids (segmentation.yaml, data_fraction.yaml): about
# 30 minutes more on 2 cores (1,713 s measured); finished points of `make run` are reused.
segmentation: $(STAMP)
	$(BIN)/python -m wsss_lib.experiments.main --segmentation $(ARGS)

# The main job plus the setting grids (oaa_setting.yaml, oaa_setting_mobilenet.yaml, segmentation_setting*.yaml):
# the OAA table on benchmark version 1, its two-part variant and version 2, pretrained, from scratch and
# with the ImageNet MobileNetV2 backbone (hours on 2 cores).
setting: $(STAMP)
	$(BIN)/python -m wsss_lib.experiments.main --setting $(ARGS)

# The candidate benchmark settings measured with the plain CAM classifier only (geometry, transfer,
# first epochs, drift, cost) -> reports/benchmark_candidates.md (about 1.5 h on 2 cores).
candidates: $(STAMP)
	$(BIN)/python -m wsss_lib.experiments.candidates $(ARGS)

# Command 2: the whole test suite: unit and integration tests (pytest), every notebook and the
# course's exercise notebooks (nbval), notebooks in quick mode (WSSS_QUICK=1).
test: $(STAMP)
	WSSS_QUICK=1 $(BIN)/python -m pytest -n 2 --dist loadfile --durations=15 --nbval-lax tests notebooks course/source

# The fast tier: formulas, units, tables, layers and docs (tests/conftest.py FAST_MODULES), nothing
# trained, no notebook executed: under a minute, for the edit-test loop.
test-fast: $(STAMP)
	WSSS_QUICK=1 $(BIN)/python -m pytest -n 2 -q -m fast tests

# The GPU check, one prepared command for a machine with CUDA: the fast-path tests under sync debug
# mode, a classifier + OAA run on the GPU and the VOC-size benchmarks, written to reports/bench_gpu.md
# (sized to finish within 8 minutes on one H100; run twice on an H200: reports/bench_gpu.md). It needs only torch, torchvision,
# numpy, pandas, matplotlib, pytest, pyyaml, scipy, tqdm and filelock, and runs with this folder's
# .venv where there is one, else with `python3` (a bare GPU node). Without CUDA it says so, exits 0.
BENCH_GPU_OUT ?= reports/bench_gpu.md
bench-gpu:
	$(or $(wildcard $(BIN)/python),python3) -m wsss_lib.speed.gpu --out $(BENCH_GPU_OUT) $(ARGS)

# The course (course/, nbgrader's layout; docs/teaching.md): the student release of course/source/
# (solutions stripped) into course/release/.
course: $(STAMP)
	$(BIN)/python -m wsss_lib.course.grading release

# A demo of grading: a student's copy with one right answer, one wrong and the rest unanswered,
# autograded by nbgrader; prints the grades and the failing checks' messages, writes HTML feedback.
grade-demo: $(STAMP)
	$(BIN)/python -m wsss_lib.course.grading grade-demo

clean-runs:
	rm -rf runs
