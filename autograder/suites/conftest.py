"""Loads the grading plugin when a hidden suite runs under pytest directly (see autograder/plugin.py)."""

from autograder.plugin import add_options as pytest_addoption  # noqa: F401  (pytest finds hooks by name)
from autograder.plugin import configure as pytest_configure  # noqa: F401
