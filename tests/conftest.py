"""Shared fixtures. The database is the real embedded PostgreSQL/pgvector (or DATABASE_URL)."""
from __future__ import annotations

import pytest

from devservices.embedding_double import run_embedding_double


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user(
        username="officer", password="correct-horse-battery", is_staff=True, is_superuser=True
    )


# Tasks that tests queue in-process go to a Redis database of their own: on the developer's broker
# database a `make run` worker would take them and act on ids from the test database.
TEST_BROKER_DATABASE = 12


def test_broker_url() -> str:
    from django.conf import settings

    return settings.CELERY_BROKER_URL.rsplit("/", 1)[0] + f"/{TEST_BROKER_DATABASE}"


def pytest_configure(config):
    from config.celery import app
    from config.development import start_embedded_services

    start_embedded_services()  # the settings module starts nothing; the test session is an entry point

    app.conf.broker_url = test_broker_url()


def pytest_unconfigure(config):
    """Drop the tasks this run queued; stop the embedded services it started (a developer's are left alone)."""
    from config.celery import app
    from devservices.lifecycle import stop_services_started_here

    try:
        app.control.purge()
    except Exception:  # noqa: BLE001 - a broker already gone leaves nothing to purge
        pass
    stop_services_started_here()


@pytest.fixture
def eager_tasks():
    """Tasks queued with .delay() run at once, in this process (the worker's code path, without a worker)."""
    from config.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


# The protocol double per test module, reset around each test (tests/verifier has its own, 384-d, e5-named).
@pytest.fixture(scope="module")
def double_server():
    with run_embedding_double(dimensions=1024, hang_seconds=5.0) as double:
        yield double


@pytest.fixture
def embedding_double(double_server):
    """The double with no faults, no latency and zeroed counters (one server per test module)."""
    double_server.reset()
    yield double_server
    double_server.reset()
