"""Small process helpers shared by the embedded services: locks, pid files, ports."""
from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("SERVICE_VAR_DIR", REPOSITORY_ROOT / "var")).resolve()
RUN_DIR = VAR_DIR / "run"
LOG_DIR = VAR_DIR / "log"


# Names of the embedded services this process started (not merely reused); tests stop these at the end.
STARTED_HERE: set[str] = set()


class ServiceStartError(RuntimeError):
    """An embedded service did not come up; the message names its log file."""


@contextlib.contextmanager
def exclusive_lock(name: str) -> Iterator[None]:
    """Serialise start/stop of one service across processes (web, worker and beat start together)."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    with open(RUN_DIR / f"{name}.lock", "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def port_is_open(host: str, port: int, timeout: float = 0.2) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def wait_for_port(host: str, port: int, *, timeout: float, what: str, log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_is_open(host, port):
            return
        time.sleep(0.05)
    raise ServiceStartError(f"{what} did not listen on {host}:{port} within {timeout:.0f}s; see {log_path}")


def read_pid(pid_path: Path) -> int | None:
    try:
        pid = int(pid_path.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def stop_pid(pid_path: Path, *, timeout: float = 10.0) -> bool:
    """SIGTERM the process in pid_path, then SIGKILL after timeout. True when one was running."""
    pid = read_pid(pid_path)
    if pid is None:
        pid_path.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and read_pid(pid_path) is not None:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    if read_pid(pid_path) is not None:
        os.kill(pid, signal.SIGKILL)
    pid_path.unlink(missing_ok=True)
    return True
