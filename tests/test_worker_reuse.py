"""An exercise starts on a worker in the state its load left (``Session.use_worker_for``): the last exercise's
worker, reset, when every test of that exercise passed; a fresh one after an exercise that lost points."""

from __future__ import annotations

import pytest
import torch

from autograder.session import Session
from tests.test_adversarial_worker import CountingServer

pytestmark = pytest.mark.engine

PROGRAM = [{"index": 0, "grade_id": None, "source": """\
import random

import numpy as np
import torch


def draw():
    return torch.rand(3), random.random(), float(np.random.rand())


def disturb():
    torch.rand(100)
    random.random()
    np.random.rand()
    torch.set_default_dtype(torch.float64)
    torch.set_grad_enabled(False)


def state():
    return torch.ones(1).dtype, torch.is_grad_enabled()
"""}]


@pytest.fixture
def session(server):
    counting = CountingServer(server)
    session = Session(counting, PROGRAM, seed=7, device="cpu", trace=[], time_limit=30)
    yield session, counting
    session.close()


def values(session) -> tuple:
    drawn, python, numpy = session.call("draw").value
    return drawn.tensor.tolist(), python, numpy


def test_a_passing_exercise_hands_on_its_worker_reset(session):
    session, counting = session
    session.use_worker_for("first")
    fresh = values(session)
    session.call("disturb")
    session.use_worker_for("second")  # every test of "first" passed: the same worker, put back
    assert values(session) == fresh, "the random generators were not reset to where the load left them"
    assert session.call("state").value == (torch.float32, True), "default dtype or grad mode not reset"
    assert counting.spawned == 1


def test_an_exercise_that_lost_points_hands_on_a_fresh_worker(session):
    session, counting = session
    session.use_worker_for("first")
    fresh = values(session)
    first_worker = session.worker
    session.call("disturb")
    session.test_failed()
    session.use_worker_for("second")
    assert values(session) == fresh
    assert counting.spawned == 2 and session.worker is not first_worker and not first_worker.alive


def test_a_worker_that_cannot_reset_is_replaced_at_no_cost(session):
    session, counting = session
    session.use_worker_for("first")
    fresh = values(session)
    session.worker.kill()  # gone between exercises: the reset fails, a fresh worker loads
    session.use_worker_for("second")
    assert values(session) == fresh
    assert counting.spawned == 2 and session.lost_in_scope == 0
