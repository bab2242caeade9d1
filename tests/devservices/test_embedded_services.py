"""The embedded services start on their own ports and data directory, reuse what runs, and stop cleanly.

Each test starts its own instances (own var dir, own ports) and never touches the shared ones.
"""
import os
import subprocess
import sys
from pathlib import Path

import psutil
import psycopg
import pytest

from tests.support.services import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def own_services(tmp_path):
    environment = {
        **os.environ,
        "SERVICE_VAR_DIR": str(tmp_path / "var"),
        "EMBEDDED_POSTGRES_PORT": str(free_port()),
        "EMBEDDED_EMBEDDING_PORT": str(free_port()),
    }

    def devservices(action: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "devservices", action], cwd=ROOT, env=environment,
                              capture_output=True, text=True, timeout=120)

    yield environment, devservices
    devservices("stop")


def processes_using(path: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any(str(path) in part for part in process.info["cmdline"] or []):
            found.append(process)
    return found


def test_it_starts_postgresql_with_pgvector_and_the_embedding_endpoint(own_services):
    environment, devservices = own_services
    started = devservices("start")
    assert started.returncode == 0, started.stderr
    port = int(environment["EMBEDDED_POSTGRES_PORT"])
    with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="service", autocommit=True) as db:
        db.execute("CREATE EXTENSION IF NOT EXISTS vector")
        distance = db.execute("SELECT '[1,0]'::vector <=> '[0,1]'::vector").fetchone()[0]
    assert distance == pytest.approx(1.0)

    import httpx

    embedding_port = environment["EMBEDDED_EMBEDDING_PORT"]
    response = httpx.post(f"http://127.0.0.1:{embedding_port}/v1/embeddings",
                          json={"model": "multilingual-e5-small-q4", "input": ["无线蓝牙耳机"],
                                "input_type": "passage"})
    assert len(response.json()["data"][0]["embedding"]) == 384


def test_it_reuses_running_services_and_keeps_data_across_restarts(own_services):
    environment, devservices = own_services
    assert devservices("start").returncode == 0
    port = int(environment["EMBEDDED_POSTGRES_PORT"])
    with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="service", autocommit=True) as db:
        db.execute("CREATE TABLE kept (value text)")
        db.execute("INSERT INTO kept VALUES ('survives a restart')")
    assert devservices("start").returncode == 0  # a second start reuses the running servers
    assert devservices("stop").returncode == 0
    assert devservices("start").returncode == 0
    with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="service") as db:
        assert db.execute("SELECT value FROM kept").fetchone()[0] == "survives a restart"


def test_it_leaves_no_process_behind_when_stopped(own_services):
    environment, devservices = own_services
    assert devservices("start").returncode == 0
    var_dir = Path(environment["SERVICE_VAR_DIR"])
    assert processes_using(var_dir), "the embedded PostgreSQL should run from the test's var dir"
    stopped = devservices("stop")
    assert stopped.returncode == 0, stopped.stderr
    psutil.wait_procs(processes_using(var_dir), timeout=10)
    assert processes_using(var_dir) == []
    status = devservices("status").stdout
    assert "embedding" in status and f"{environment['EMBEDDED_EMBEDDING_PORT']} down" in status
