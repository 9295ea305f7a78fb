"""Shared fixtures: one worker server for the whole test session (it imports torch once)."""

from __future__ import annotations

import pytest
import torch

from autograder.worker.pool import WorkerServer
from tests.variants import grade_variant


@pytest.fixture(scope="session")
def server():
    torch.set_num_threads(1)  # as the CLI does: the grader's tensors are tiny
    with WorkerServer() as srv:
        yield srv


@pytest.fixture
def grade_cells(server, tmp_path):
    """Grade the solution notebook with some exercise cells replaced:
    ``grade_cells("a1_attention", {"softmax": src})``."""

    def run(assignment: str, cells: dict[str, str], **kwargs):
        return grade_variant(assignment, cells, tmp_path, server=server, **kwargs)

    return run
