"""The hidden suites' command-line options (``--submission``, ``--device``, ...), registered as a ``-p`` plugin
(``addopts`` of ``autograder/suites/pytest.ini`` and of ``pyproject.toml``), never by ``suites/conftest.py``.

pytest picks the conftest.py files it imports before it imports any conftest: from the arguments it can already
parse. An option a conftest registers is unknown then, so ``--submission PATH`` left PATH looking like a test path
and pytest imported every conftest.py in the submission's folder and its parents: a student's code, run in the
grader's process, outside the sandbox. A ``-p`` plugin's options are known before that choice.
"""

from autograder.plugin import add_options as pytest_addoption  # noqa: F401  (pytest finds hooks by name)
