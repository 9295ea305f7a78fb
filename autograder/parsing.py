"""Building ASTs and formatting tracebacks behind one lock.

The grader grades several submissions at once, in threads, and CPython 3.11 can fail when two threads build
Python ASTs at the same moment ("SystemError: AST constructor recursion depth mismatch", python/cpython#106905;
pytest-dev/pytest#10763 is the same bug met in pytest's traceback formatting). Our own parsing (the notebook reader,
the usage-policy scan, release matching) and traceback formatting (which parses source lines for its ``^^^``
marks) go through here; the plugin keeps pytest from formatting tracebacks while grading (``pytrace=False``).
"""

from __future__ import annotations

import ast
import functools
import threading
import traceback

_LOCK = threading.Lock()


def parse(source: str, filename: str = "<unknown>") -> ast.Module:
    """The tree of ``source``, shared: callers only read it. A submission's cells are parsed by several passes (the
    release check, the definitions filter, the usage scan), and the release's given cells by every submission."""
    with _LOCK:
        return _parse(source, filename)


@functools.lru_cache(maxsize=1024)
def _parse(source: str, filename: str) -> ast.Module:
    return ast.parse(source, filename)


def format_exception(exc: BaseException) -> str:
    with _LOCK:
        return "".join(traceback.format_exception(exc))
