"""Building ASTs and formatting tracebacks behind one lock.

The grader grades several submissions at once, in threads, and CPython 3.11 can fail when two threads build
Python ASTs at the same moment ("SystemError: AST constructor recursion depth mismatch", python/cpython#106905;
pytest-dev/pytest#10763 is the same bug met in pytest's traceback formatting). Our own parsing (the notebook reader,
the usage-policy scan, release matching) and traceback formatting (which parses source lines for its ``^^^``
marks) go through here; the plugin keeps pytest from formatting tracebacks while grading (``pytrace=False``).
"""

from __future__ import annotations

import ast
import threading
import traceback
from collections import OrderedDict

_LOCK = threading.Lock()
# A tree holds about 100 bytes per character of its source (a 0.7 MiB cell: 70 MB), and a notebook's size is not
# bounded: the cache keeps at most this many characters of source in all (the largest solution notebook has 37 K),
# so one submission's huge cells cannot stay in the grader's memory for the rest of a batch.
MAX_CACHED_CHARS = 256_000
_CACHE: OrderedDict[tuple[str, str], ast.Module] = OrderedDict()
_cached_chars = 0


def parse(source: str, filename: str = "<unknown>") -> ast.Module:
    """The tree of ``source``, shared: callers only read it. A submission's cells are parsed by several passes (the
    release check, the definitions filter, the usage scan), and the release's given cells by every submission."""
    with _LOCK:
        return _parse(source, filename)


def _parse(source: str, filename: str) -> ast.Module:
    """Least recently used trees go first once the cache holds ``MAX_CACHED_CHARS`` of source; a larger source is
    parsed every time."""
    global _cached_chars
    key = (source, filename)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    tree = ast.parse(source, filename)
    if len(source) <= MAX_CACHED_CHARS:
        _CACHE[key] = tree
        _cached_chars += len(source)
        while _cached_chars > MAX_CACHED_CHARS:
            (old, _), _ = _CACHE.popitem(last=False)
            _cached_chars -= len(old)
    return tree


def format_exception(exc: BaseException) -> str:
    with _LOCK:
        return "".join(traceback.format_exception(exc))
