# The two commands of the README. Each sets up .venv on first use (scripts/setup-env.sh).
PY := .venv/bin/python

.PHONY: grade test setup lint

grade: setup  ## grade the bundled example submissions and print the reports
	$(PY) -m autograder grade examples/submissions/*/a1_attention --out-dir results/examples

test: setup lint   ## the linter, the type checker, then the repository's own tests
	$(PY) -m pytest

lint: setup   ## ruff on everything, mypy on the engine (settings in pyproject.toml)
	$(PY) -m ruff check .
	$(PY) -m mypy

setup:       ## set up .venv only (a learner's first command)
	@scripts/setup-env.sh
