"""The settings module as a process sees it: bad values stop start-up with a message naming them."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


def run_check(**environment: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **environment}
    return subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def test_it_refuses_to_start_without_a_secret_key_in_production():
    result = run_check(DEBUG="false", SECRET_KEY="", ALLOWED_HOSTS="example.org")
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is false" in result.stderr


def test_it_names_a_malformed_embedding_dimension():
    result = run_check(EMBEDDING_DIMENSIONS="lots")
    assert result.returncode != 0
    assert "EMBEDDING_DIMENSIONS='lots' is not an integer" in result.stderr


@pytest.mark.django_db
def test_it_runs_on_postgresql_with_pgvector():
    from django.db import connection

    assert settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        (version,) = cursor.fetchone()
    assert tuple(int(part) for part in version.split(".")[:2]) >= (0, 8)


def test_it_points_celery_at_a_redis_that_answers():
    import redis

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=2)
    assert client.ping() is True


def test_it_refuses_to_start_in_production_without_allowed_hosts():
    result = run_check(DEBUG="false", SECRET_KEY="k" * 50, ALLOWED_HOSTS="")
    assert result.returncode != 0
    assert "ALLOWED_HOSTS must be set when DEBUG is false" in result.stderr


def test_it_refuses_the_embedded_development_services_in_production():
    # The image has neither devservices/ nor its packages: production must name its services.
    environment = {"DEBUG": "false", "SECRET_KEY": "k" * 50, "ALLOWED_HOSTS": "example.org",
                   "DATABASE_URL": "", "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0", "EMBEDDING_BASE_URL": ""}
    result = run_check(**environment)
    assert result.returncode != 0
    assert "DATABASE_URL, EMBEDDING_BASE_URL must be set when DEBUG is false" in result.stderr
