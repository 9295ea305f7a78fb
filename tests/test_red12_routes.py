"""Routes found by red team 12 against the grading-speed changes, each failing before its fix.

The shared parse cache (autograder/parsing.py) must not keep one submission's huge cells for the rest of a batch.

A tree holds about 100 bytes per character of source and a notebook's size is not bounded: before the cache held
at most ``MAX_CACHED_CHARS`` of source, ten 0.7 MiB cells of one notebook kept 700 MB in the grader until 1024 other
cells had been parsed (red12).
"""

from __future__ import annotations

import ast
import gc
import warnings

import pytest

from autograder import parsing, wire

pytestmark = pytest.mark.engine


def _live_trees(marker: str) -> int:
    gc.collect()
    with warnings.catch_warnings():  # isinstance on some of torch's objects warns of a deprecated name
        warnings.simplefilter("ignore")
        return sum(1 for o in gc.get_objects() if isinstance(o, ast.Module) and o.body
                   and isinstance(o.body[0], ast.Assign) and getattr(o.body[0].targets[0], "id", "").startswith(marker))


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


def test_a_utf16_header_cannot_hide_its_nesting_and_values_from_the_check():
    """json.loads(bytes) detects UTF-16 and UTF-32; in UTF-16-LE U+225B is the bytes ``[`` and ``"``, so the check on
    the raw bytes lost track of the strings and counted neither the values nor the depth that followed (red12)."""
    text = '{"a": "\u225b", "ok": true, "many": [' + "0," * 150_000 + '0], "result": ' + "[" * 40 + "]" * 40 + "}"
    raw = text.encode("utf-16-le")
    with pytest.raises(wire.WireError):
        wire._parse(raw, memoryview(b""))
