"""The README and docs/ link only what is in the repository, and docs/spec.md is current with the hidden suites."""

from __future__ import annotations

import re

import pytest

from autograder.suites import ORDER, load_suite
from tests.variants import REPO

pytestmark = pytest.mark.engine

DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_links_resolve_inside_the_repository(document):
    for target, _ in LINK.findall(document.read_text()):
        if re.match(r"[a-z]+://", target):
            continue  # a web address
        resolved = (document.parent / target).resolve()
        assert resolved.is_relative_to(REPO), f"{document.name} links outside the repository: {target}"
        assert resolved.exists(), f"{document.name} links {target}, which does not exist"


@pytest.mark.parametrize("assignment", ORDER)
def test_spec_lists_every_hidden_test_with_its_points(assignment):
    spec = (REPO / "docs" / "spec.md").read_text()
    for test in load_suite(assignment).tests:
        row = re.search(rf"\| {test.group} \| {test.points:g} \| `{test.name}` \|", spec)
        assert row, f"docs/spec.md has no row `{test.group} | {test.points:g} | {test.name}` for {assignment}"
