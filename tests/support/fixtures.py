"""Fixtures that start our own services for a test module: `from tests.support.fixtures import *` in a conftest."""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from devservices.embedding_double import run_embedding_double

from .services import ThrowawayPostgres, ThrowawayRedis, manage, service_environment

__all__ = ["own_postgres", "own_database", "own_redis", "own_double", "own_environment"]


@pytest.fixture(scope="module")
def own_postgres():
    # Not under pytest's tmp_path: every pytest session resets /tmp/pytest-of-<user> to mode 0700, which
    # would lock out the server's system user whenever another test run starts beside this one.
    server = ThrowawayPostgres(Path(tempfile.mkdtemp(prefix="proof-postgres-")))
    server.initialise()
    server.start()
    yield server
    server.remove()


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory):
    server = ThrowawayRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.kill()


@pytest.fixture(scope="module")
def own_double():
    with run_embedding_double(dimensions=1024, hang_seconds=3.0) as double:
        yield double


@pytest.fixture(scope="module")
def own_environment(own_postgres, own_redis, own_double) -> dict[str, str]:
    """Environment for service subprocesses: our PostgreSQL (database `service`), Redis and the double."""
    return service_environment(
        database_url=own_postgres.url("service"), broker_url=own_redis.url(),
        embedding_base_url=own_double.base_url, embedding_model=own_double.model,
    )


@pytest.fixture(scope="module")
def own_database(own_postgres, own_environment) -> str:
    """The `service` database on our own server, migrated by manage.py like a deployment would."""
    url = own_postgres.create_database("service")
    manage("migrate", "--no-input", environment=own_environment)
    return url
