# keras_legw: every command creates the virtualenv it needs when missing.
#   make demo       MNIST-LSTM at batch 8192 (64x) with LEGW, no other flag,
#                   then the growing batch (LAMB, 256 to 8192 by epoch 6)
#   make test       the whole test suite (what CI runs)
#   make docs       the documentation site into site/ (strict: a broken link,
#                   a missing reference or a bad docstring fails it)
#   make plan       preview the demo's schedule (and plot it to lr.png)
#   make bench      the benchmarks: schedule and noise-scale overhead, ResNet-50 images/s
#   make reproduce  the MNIST-LSTM sweeps of docs/results (hours on a CPU)
#   make reproduce-sequence  the PTB and GNMT sweeps, tunings and throughput (about 25 h here: the training seconds of its CSVs' rows, each run counted once)
#   make bazel-test the test suite under Bazel, offline (needs bazel-bootstrap)
#   make mutate     mutation testing of keras_legw/ against tests/keras_legw
#                   (mutmut; hours on two cores, not part of CI)

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The real data sets lie beside the checkout (../shared/data); elsewhere set
# LEGW_DATA_DIR or pass --data_dir, or let the loaders download.
LEGW_DATA_DIR ?= $(abspath ../shared/data)
export LEGW_DATA_DIR
export TF_CPP_MIN_LOG_LEVEL ?= 2
PYTEST_WORKERS ?= 2
# The tests also run the schedule on Keras' PyTorch backend. 2.13.0 is the CPU
# build that this project's machines keep on disk; set TORCH= to skip it
# (the test then says it was skipped on purpose; without torch it fails).
TORCH ?= torch==2.13.0


.PHONY: venv docs demo test plan bench reproduce reproduce-sequence bazel-test mutate clean

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[zoo,test]'
	$(if $(TORCH),$(PY) -m pip install -q '$(TORCH)')
	touch $@

venv: $(VENV)/.installed

$(VENV)/.docs-installed: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[docs]'
	touch $@

docs: $(VENV)/.docs-installed
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

demo: venv
	$(PY) -m models.mnist_lstm --batch_size=8192
	$(PY) -m models.mnist_lstm_growing

test: venv
	$(if $(TORCH),,LEGW_SKIP_TORCH=1) $(PY) -m pytest -q -n $(PYTEST_WORKERS) --durations=10 tests

plan: venv
	$(PY) -m keras_legw plan --base-lr 0.002 --base-batch 128 --batch 8192 \
	    --base-warmup-epochs 0.2 --num-examples 60000 --epochs 25 --plot lr.png

bench: venv
	$(PY) -m bench.schedule_overhead
	$(PY) -m bench.noise_scale_overhead
	$(PY) -m bench.resnet50_throughput --batch_size=32 --steps=4 --repeats=2

reproduce: venv
	$(PY) -m bench.mnist_sweep --plan=tuning
	$(PY) -m bench.mnist_sweep --plan=claim
	$(PY) -m bench.mnist_sweep --plan=budget
	$(PY) -m bench.noise_scale_curve --model=mnist_lstm
	$(PY) -m bench.mnist_plots
	$(PY) -m bench.growing_batch --workers=2
	$(PY) -m bench.growing_batch --plan=frozen
	$(PY) -m bench.growing_batch --plan=report
	$(PY) -m bench.batch_planner

# GNMT's base before tuning (bench.gnmt_tuning), which its earlier rows ran at,
# and the first tuning's choice (6e-3), which the 4x and 8x runs also ran at.
GNMT_UNTUNED := --base_learning_rate=0.002 --dropout=0.2
GNMT_FIRST_TUNED := --base_learning_rate=0.006 --dropout=0.1

reproduce-sequence: venv
	$(PY) -m bench.ptb_sweep --epochs=13
	$(PY) -m bench.ptb_sweep --epochs=13 --plan=autowu
	$(PY) -m bench.ptb_tuning --epochs=13 --warmups=0.025,0.1,0.4
	$(PY) -m bench.gnmt_tuning --epochs=13 --learning_rates=0.004,0.006,0.01,0.016 --dropouts=0.1 --workers=2
	$(PY) -m bench.gnmt_sweep --epochs=13
	$(PY) -m bench.gnmt_length_penalty --epochs=13
	$(PY) -m bench.gnmt_sweep --epochs=13 $(GNMT_FIRST_TUNED)
	$(PY) -m bench.gnmt_length_penalty --epochs=13 $(GNMT_FIRST_TUNED)
	$(PY) -m bench.gnmt_sweep --epochs=13 $(GNMT_UNTUNED)
	$(PY) -m bench.gnmt_length_penalty --epochs=13 $(GNMT_UNTUNED)
	$(PY) -m bench.ptb_sweep --epochs=3
	$(PY) -m bench.gnmt_sweep --epochs=5 $(GNMT_UNTUNED)
	$(PY) -m bench.noise_scale_curve --model=ptb_lstm --epochs=2
	$(PY) -m bench.sequence_throughput
	$(PY) -m bench.sequence_plots

mutate: venv
	$(PY) -m pip install -q 'mutmut>=3.3,<4'
	LEGW_SKIP_TORCH=1 $(VENV)/bin/mutmut run --max-children 2 || true
	$(VENV)/bin/mutmut results > docs/mutation_results.txt

OFFLINE_REPOS := rules_cc rules_java remote_coverage_tools

.bazelrc.offline:
	for r in $(OFFLINE_REPOS); do echo "build:offline --override_repository=$$r=$(abspath third_party/bazel_offline)/$$r"; done > $@

bazel-test: venv .bazelrc.offline
	bazel test --config=offline --incompatible_use_python_toolchains=false \
	    --python_path=$(abspath $(PY)) //...

clean:
	rm -rf $(VENV) runs bazel-* lr.png mutants site
