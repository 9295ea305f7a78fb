# The two commands of the README. Each sets up .venv on first use (scripts/setup-env.sh).
PY := .venv/bin/python

.PHONY: grade test setup

grade: setup  ## grade the bundled example submissions and print the reports
	$(PY) -m autograder grade examples/submissions/*/a1_attention --out-dir results/examples

test: setup   ## run the repository's own tests
	$(PY) -m pytest

setup:
	@scripts/setup-env.sh
