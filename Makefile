# Two commands do everything on a fresh machine (Python >= 3.10 and make):
#   make lab   -- create .venv if missing, install, open JupyterLab on notebooks/
#   make test  -- create .venv if missing, install, run every test
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: lab test install lint serve dashboard notebooks exercises solutions benchmarks clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ipykernel)"
	touch $(STAMP)

install: $(STAMP)

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

test: $(STAMP)
	$(BIN)/python -m pytest tests

lint: $(STAMP)
	$(BIN)/ruff check diffusion_lab tests benchmarks tools

# the generation service: HTTP API + web page on http://$(HOST):$(PORT)/ (Ctrl-C stops it)
HOST ?= 127.0.0.1
PORT ?= 8000
serve: $(STAMP)
	$(BIN)/python -m diffusion_lab serve --host $(HOST) --port $(PORT)

# lesson 10's app as a web page, served by Voila on http://$(HOST):$(DASHBOARD_PORT)/
# (`make dashboard PORT=9000` for another port; Ctrl-C stops it)
DASHBOARD_PORT = $(if $(filter command line environment,$(origin PORT)),$(PORT),8866)
dashboard: $(STAMP)
	$(BIN)/python -m voila notebooks/10_dashboard.ipynb --port=$(DASHBOARD_PORT) \
		--Voila.ip=$(HOST) --no-browser --Voila.mathjax_url= \
		--VoilaConfiguration.show_tracebacks=False

# re-execute the course notebooks from notebooks/src/ (NB="02 05" for a subset)
notebooks: $(STAMP)
	$(BIN)/python tools/build_notebooks.py $(NB)

clean:
	rm -rf $(VENV) build *.egg-info

# regenerate exercises/ from solutions/*.ipynb (no kernel needed)
exercises: $(STAMP)
	$(BIN)/python tools/make_exercises.py

# re-execute solutions/src/*.py into solutions/ and regenerate their exercises (NB="01 05")
solutions: $(STAMP)
	$(BIN)/python tools/build_solutions.py $(NB)
