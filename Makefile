# Two commands do everything on a fresh machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lab release benchmark benchmark-class clean

$(STAMP): requirements.txt constraints.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -c constraints.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)  ## release the lessons into demo-out/lessons (lessons/ is left alone), grade the bundled demo class, print the grade table
	$(PY) -m autograder demo --out demo-out

test: $(STAMP)  ## the whole test suite: notebooks in real kernels, the real nbgrader
	$(PY) -m pytest -n 2 --dist loadgroup

test-fast: $(STAMP)  ## the tests that need no kernel
	$(PY) -m pytest -m "not slow"

lab: $(STAMP)  ## JupyterLab on the student notebooks
	$(VENV)/bin/jupyter lab $$( [ "$$(id -u)" = 0 ] && echo --allow-root ) lessons/

release: $(STAMP)  ## regenerate lessons/ from solutions/ (refuses to overwrite a lesson edited since its release; ARGS=--force)
	$(PY) -m autograder release $(ARGS)

benchmark: $(STAMP)  ## the figures of BENCHMARKS.md
	$(PY) benchmarks/run.py

benchmark-class: $(STAMP)  ## a class of 100 students graded by plain nbgrader and by `grade` (ARGS="--students 20 --runs 1")
	$(PY) benchmarks/class_benchmark.py $(ARGS)

clean:
	rm -rf demo-out .pytest_cache
