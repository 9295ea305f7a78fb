"""The shared parse cache (autograder/parsing.py) must not keep one submission's huge cells for the rest of a batch.

A tree holds about 100 bytes per character of source and a notebook's size is not bounded: before the cache held
at most ``MAX_CACHED_CHARS`` of source, ten 0.7 MiB cells of one notebook kept 700 MB in the grader until 1024 other
cells had been parsed (red12).
"""

from __future__ import annotations

import ast
import gc

import pytest

from autograder import parsing

pytestmark = pytest.mark.engine


def _live_trees(marker: str) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, ast.Module) and o.body and isinstance(o.body[0], ast.Assign)
               and getattr(o.body[0].targets[0], "id", "").startswith(marker))


def test_huge_cells_are_not_kept_after_their_pass():
    marker = "red12_huge_"
    body = "[" + ",".join(f"a{i}" for i in range(40_000)) + "]\n"  # about 300 K characters
    for k in range(2):
        parsing.parse(f"{marker}{k} = {body}")
    assert _live_trees(marker) == 0, "the parse cache keeps trees of huge cells alive"


def test_the_cache_holds_a_bounded_amount_of_source():
    marker = "red12_many_"
    body = "[" + ",".join(f"a{i}" for i in range(4_000)) + "]\n"  # about 24 K characters
    for k in range(20):  # 480 K characters in all, twice the cache's budget
        parsing.parse(f"{marker}{k} = {body}")
    kept = _live_trees(marker)
    assert kept * len(body) <= parsing.MAX_CACHED_CHARS, f"{kept} trees of {len(body)} characters kept"
    tree = parsing.parse(f"{marker}19 = {body}")
    assert tree is parsing.parse(f"{marker}19 = {body}"), "a small cell parsed twice is parsed once"
