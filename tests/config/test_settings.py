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


def test_importing_the_settings_starts_no_process(tmp_path):
    # Every service URL unset, embedded services on ports where nothing runs: a settings module that started
    # them would spawn processes, which this interpreter refuses.
    from tests.support.services import free_port, port_is_open

    ports = {"EMBEDDED_POSTGRES_PORT": free_port(), "EMBEDDED_EMBEDDING_PORT": free_port()}
    script = (
        "import os, subprocess, sys\n"
        "def refuse(*args, **kwargs): raise RuntimeError('importing config.settings started a process')\n"
        "subprocess.Popen.__init__ = refuse; os.fork = refuse; os.posix_spawn = refuse; os.posix_spawnp = refuse\n"
        "import config.settings as s\n"
        "print(s.DATABASE_URL, s.EMBEDDING_BASE_URL)\n"
    )
    environment = {key: value for key, value in os.environ.items()
                   if key not in {"DATABASE_URL", "CELERY_BROKER_URL", "EMBEDDING_BASE_URL", "DEBUG"}}
    environment.update({key: str(port) for key, port in ports.items()}, SERVICE_VAR_DIR=str(tmp_path / "var"))
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=environment, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert f":{ports['EMBEDDED_POSTGRES_PORT']}/" in result.stdout
    assert f":{ports['EMBEDDED_EMBEDDING_PORT']}/" in result.stdout
    assert not any(port_is_open(port) for port in ports.values())
    assert not (tmp_path / "var" / "postgres").exists()
