"""Loads the grading plugin when a hidden suite runs under pytest directly (see autograder/plugin.py); its options
come from autograder/suites/options.py, a ``-p`` plugin (see there why not from here)."""

from autograder.plugin import configure as pytest_configure  # noqa: F401  (pytest finds hooks by name)
