"""The protocol double's own tests: one server per module, reset around each test."""
from __future__ import annotations

import pytest

from devservices.embedding_double import run_embedding_double


@pytest.fixture(scope="module")
def double_server():
    with run_embedding_double(dimensions=1024, hang_seconds=5.0) as double:
        yield double


@pytest.fixture
def embedding_double(double_server):
    double_server.reset()
    yield double_server
    double_server.reset()
