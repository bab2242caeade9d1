"""Health: /healthz (liveness), /readyz (readiness, staff), the embedding_health command, and the worker's refusal
to start on a wrong endpoint."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command

from devservices.embedding_double import run_embedding_double
from embeddings.client import reset_client
from embeddings.errors import DimensionMismatch
from embeddings.selectors import check_worker_endpoint
from embeddings.store import active_space

pytestmark = pytest.mark.django_db

REPOSITORY = Path(__file__).resolve().parents[2]
# A worker started here must not take tasks meant for the developer's or another run's workers.
ISOLATED_BROKER_URL = django_settings.CELERY_BROKER_URL.rsplit("/", 1)[0] + "/14"


def url_of_test_database(name: str | None = None) -> str:
    from django.db import connection

    server = connection.settings_dict
    return (f"postgres://{quote(server['USER'])}:{quote(server['PASSWORD'] or '')}@{server['HOST']}:{server['PORT']}/"
            f"{name or server['NAME']}")


@pytest.fixture
def own_empty_database_url():
    """A database on the test server that nobody has migrated."""
    name = f"unmigrated_{os.getpid()}"
    with psycopg.connect(url_of_test_database("postgres"), autocommit=True) as maintenance:
        maintenance.execute(f'DROP DATABASE IF EXISTS "{name}"')
        maintenance.execute(f'CREATE DATABASE "{name}"')
    yield url_of_test_database(name)
    with psycopg.connect(url_of_test_database("postgres"), autocommit=True) as maintenance:
        maintenance.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def staff_client(client, django_user_model):
    """An officer (staff, not superuser): readiness names internal URLs, so it is for staff only."""
    officer = django_user_model.objects.create_user(username="health-officer", password="x-unused-x", is_staff=True)
    client.force_login(officer)
    return client


@pytest.fixture
def hanging_endpoint(settings):
    """An endpoint that accepts connections and never answers (SGLang stuck on a GPU)."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    settings.EMBEDDING_BASE_URL = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    settings.EMBEDDING_TIMEOUT_SECONDS = 30.0
    reset_client()
    yield settings.EMBEDDING_BASE_URL
    listener.close()
    reset_client()


def test_liveness_answers_a_container_probe_in_production_while_the_endpoint_hangs(client, settings, hanging_endpoint):
    import time

    # compose's probe: plain http to localhost:8000, with production's redirect and host list in force.
    settings.DEBUG = False
    settings.SECURE_SSL_REDIRECT = True
    settings.ALLOWED_HOSTS = ["customs.example.org"]
    durations = []
    for _ in range(20):
        started = time.perf_counter()
        response = client.get("/healthz", HTTP_HOST="localhost:8000")
        durations.append(time.perf_counter() - started)
        assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert sorted(durations)[len(durations) // 2] < 0.05
    assert b"127.0.0.1" not in response.content and response["Cache-Control"] == "no-store"


def test_readiness_is_for_staff_only(client):
    response = client.get("/readyz")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_readiness_checks_the_database_and_the_broker(staff_client, gateway_on_double):
    report = staff_client.get("/readyz").json()
    assert report["database"] == {"reachable": True, "error": None}
    assert report["broker"] == {"reachable": True, "error": None}
    assert report["status"] == "ok"


def test_readiness_is_unavailable_without_a_broker(staff_client, gateway_on_double, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    response = staff_client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable" and response.json()["broker"]["reachable"] is False


@pytest.fixture
def wrong_dimension_endpoint(settings):
    """An endpoint that calls itself Qwen3-Embedding-0.6B but serves 768-dimensional vectors."""
    with run_embedding_double(dimensions=768) as double:
        settings.EMBEDDING_BASE_URL = double.base_url
        settings.EMBEDDING_MODEL = double.model
        settings.EMBEDDING_DIMENSIONS = None
        reset_client()
        yield double
    reset_client()


def test_it_reports_a_healthy_endpoint_matching_the_active_space(staff_client, gateway_on_double):
    active_space()
    response = staff_client.get("/readyz")
    assert response.status_code == 200
    report = response.json()
    assert report["status"] == "ok"
    assert report["endpoint"] == {"url": gateway_on_double.base_url, "reachable": True,
                                  "model": "Qwen/Qwen3-Embedding-0.6B", "dimensions": 1024, "error": None}
    assert report["matches_active_space"] is True
    assert report["active_space"]["dimensions"] == 1024
    assert set(report["cache"]["process"]) == {"hits", "misses", "hit_rate"}


def test_it_reports_an_unreachable_endpoint(staff_client, gateway_on_double):
    active_space()
    gateway_on_double.fail_always("503")
    response = staff_client.get("/readyz")
    assert response.status_code == 200  # web still serves; embedding work waits as pending items
    report = response.json()
    assert report["status"] == "degraded" and report["endpoint"]["reachable"] is False
    assert "503" in report["endpoint"]["error"]


def test_it_reports_an_endpoint_serving_another_dimension(staff_client, gateway_on_double, wrong_dimension_endpoint):
    active_space()  # created while the right endpoint was configured: Qwen3, 1024
    response = staff_client.get("/readyz")
    assert response.status_code == 503
    report = response.json()
    assert report["status"] == "misconfigured" and report["endpoint"]["dimensions"] == 768
    assert report["matches_active_space"] is False and report["matches_configured_space"] is False


def test_it_is_healthy_on_a_fresh_install_with_no_space_yet(staff_client, gateway_on_double):
    response = staff_client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok" and response.json()["active_space"] is None


def test_it_makes_the_health_command_fail_on_a_mismatch(gateway_on_double, wrong_dimension_endpoint, capsys):
    with pytest.raises(CommandError, match="768 dimensions"):
        call_command("embedding_health")
    assert json.loads(capsys.readouterr().out)["endpoint"]["dimensions"] == 768


def test_it_passes_the_health_command_when_all_matches(gateway_on_double, capsys):
    active_space()
    call_command("embedding_health")
    assert json.loads(capsys.readouterr().out)["matches_active_space"] is True


def test_the_golden_health_check_fails_an_endpoint_of_the_right_shape_and_no_meaning(gateway_on_double, capsys):
    active_space()
    with pytest.raises(CommandError, match="golden check failed"):
        call_command("embedding_health", "--golden")
    golden = json.loads(capsys.readouterr().out)["golden"]
    assert golden["passed"] is False and golden["checked"] == 10 and golden["misses"]


def test_it_lets_a_worker_start_against_a_matching_endpoint(gateway_on_double):
    active_space()
    check_worker_endpoint()


def test_it_refuses_a_worker_on_an_endpoint_of_another_dimension(gateway_on_double, wrong_dimension_endpoint):
    with pytest.raises(DimensionMismatch, match="serves Qwen/Qwen3-Embedding-0.6B with 768-dimensional vectors"):
        check_worker_endpoint()


@pytest.mark.slow
def test_it_stops_a_real_celery_worker_at_start_with_the_reason(wrong_dimension_endpoint):
    environment = {**os.environ, "EMBEDDING_BASE_URL": wrong_dimension_endpoint.base_url,
                   "EMBEDDING_MODEL": wrong_dimension_endpoint.model, "DJANGO_SETTINGS_MODULE": "config.settings",
                   # The migrated test database, and a broker database no other worker reads from, so that a
                   # worker which wrongly started would take nobody's tasks.
                   "DATABASE_URL": url_of_test_database(), "CELERY_BROKER_URL": ISOLATED_BROKER_URL}
    environment.pop("EMBEDDING_DIMENSIONS", None)
    worker = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo", "--loglevel=WARNING"],
        cwd=REPOSITORY, env=environment, capture_output=True, text=True, timeout=120,
    )
    assert worker.returncode != 0
    assert "worker refused to start" in worker.stderr and "768-dimensional" in worker.stderr


@pytest.mark.slow
def test_it_stops_a_real_celery_worker_on_an_unmigrated_database(gateway_on_double, own_empty_database_url):
    environment = {**os.environ, "EMBEDDING_BASE_URL": gateway_on_double.base_url,
                   "EMBEDDING_MODEL": gateway_on_double.model, "DJANGO_SETTINGS_MODULE": "config.settings",
                   "DATABASE_URL": own_empty_database_url, "CELERY_BROKER_URL": ISOLATED_BROKER_URL}
    worker = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo", "--loglevel=WARNING"],
        cwd=REPOSITORY, env=environment, capture_output=True, text=True, timeout=120,
    )
    assert worker.returncode != 0
    assert "worker refused to start: the database is not migrated" in worker.stderr
    assert "run `python manage.py migrate`" in worker.stderr
