"""`make run` end to end: on its own data directory and ports it brings up everything, serves the admin
login page, reuses its data on a second start, and leaves no process behind when stopped."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.services import free_port

ROOT = Path(__file__).resolve().parents[2]


def start_run(environment: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "devservices.run", "--sample-data", "repository"], cwd=ROOT, env=environment,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )


def wait_until_ready(process: subprocess.Popen, timeout: float = 240) -> str:
    output, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        output.append(line)
        if line.startswith("Ctrl-C stops everything"):
            return "".join(output)
    raise AssertionError("the run command did not become ready:\n" + "".join(output))


def descendants_and_servers(process_id: int, var_dir: Path, ports: list[int]) -> list[psutil.Process]:
    """Every process the run started: its children and the servers listening on its ports."""
    found = []
    for candidate in psutil.process_iter(["cmdline", "ppid"]):
        try:
            cmdline = " ".join(candidate.info["cmdline"] or [])
            if str(var_dir) in cmdline or any(f"--port {port}" in cmdline or f":{port}" in cmdline for port in ports):
                found.append(candidate)
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.fixture
def run_broker_url():
    """A Redis database of its own for the run, emptied afterwards of what its beat queued and nobody took."""
    import redis

    url = "redis://127.0.0.1:6379/13"
    yield url
    redis.Redis.from_url(url).delete("celery")


def test_it_runs_the_whole_service_and_stops_cleanly(tmp_path, run_broker_url):
    var_dir = tmp_path / "var"
    web_port, postgres_port, embedding_port = free_port(), free_port(), free_port()
    environment = {
        **os.environ,
        "SERVICE_VAR_DIR": str(var_dir),
        "WEB_PORT": str(web_port),
        "EMBEDDED_POSTGRES_PORT": str(postgres_port),
        "EMBEDDED_EMBEDDING_PORT": str(embedding_port),
        "CELERY_BROKER_URL": run_broker_url,
        "CACHE_URL": "redis://127.0.0.1:6379/14",
    }
    environment.pop("DATABASE_URL", None)
    environment.pop("EMBEDDING_BASE_URL", None)
    ports = [web_port, postgres_port, embedding_port]

    first = start_run(environment)
    try:
        banner = wait_until_ready(first)
        assert "password" in banner
        login = httpx.get(f"http://127.0.0.1:{web_port}/admin/login/", timeout=10)
        assert login.status_code == 200 and "csrfmiddlewaretoken" in login.text
    finally:
        os.killpg(first.pid, signal.SIGINT)
        first.wait(timeout=60)
    psutil.wait_procs(descendants_and_servers(first.pid, var_dir, ports), timeout=30)
    assert descendants_and_servers(first.pid, var_dir, ports) == []

    second = start_run(environment)
    try:
        banner = wait_until_ready(second)
        assert "nomenclature already loaded" in banner  # the data of the first run is still there
        assert httpx.get(f"http://127.0.0.1:{web_port}/admin/login/", timeout=10).status_code == 200
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=60)
    psutil.wait_procs(descendants_and_servers(second.pid, var_dir, ports), timeout=30)
    assert descendants_and_servers(second.pid, var_dir, ports) == []
