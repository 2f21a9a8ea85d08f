# segkit — `make demo` runs the main job on synthetic data; `make test` runs the tests.
# Both create .venv and install segkit into it on first use.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DEMO    ?= demo

.PHONY: install demo test test-fast bench bench-quality bench-deploy bench-export-zoo lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	bash scripts/demo.sh $(DEMO)

test: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --durations=15 tests

test-fast: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python -m pytest -q -n 2 -m "not slow" tests

bench: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python scripts/bench_prepare.py
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python scripts/bench_data.py
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python scripts/bench_train.py
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python scripts/bench_infer.py
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python scripts/bench_models.py

# Real-data quality: LA + ACDC, recommended vs seed recipe, 20 training minutes each (~1.5 h on 2 cores).
bench-quality: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python scripts/bench_quality.py $(BENCH_ARGS)

# Deployment: a short-trained LA model as Keras, ONNX, LiteRT and SavedModel: equivalence, cold start, speed.
bench-deploy: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python scripts/bench_deploy.py $(BENCH_ARGS)

# Every zoo model short-trained on real LA, exported to every format, labels compared with Keras (~40 min).
bench-export-zoo: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python scripts/bench_export_zoo.py $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check segkit tests scripts
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache bench-quality bench-deploy bench-export-zoo
