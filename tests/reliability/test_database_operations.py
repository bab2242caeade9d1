"""PostgreSQL operations: it goes away under a running web server (503 with a clear message, then it
recovers), and a pg_dump/pg_restore backup brings back every vector and its HNSW index.

Our own PostgreSQL and a real gunicorn process; the shared database is never touched.
"""
from __future__ import annotations

import re
import subprocess

import httpx
import numpy as np
import pytest

from devservices.postgres import _binaries
from tests.support.services import free_port, gunicorn_server, manage, port_is_open, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def api_token(own_database, own_environment) -> str:
    environment = {**own_environment, "DJANGO_SUPERUSER_PASSWORD": "correct-horse-battery-staple"}
    manage("createsuperuser", "--no-input", "--username", "operator", "--email", "operator@example.com",
           environment=environment)
    output = manage("drf_create_token", "operator", environment=own_environment).stdout
    return re.search(r"Generated token (\w+)", output).group(1)


@pytest.fixture(scope="module")
def web(own_database, own_environment, tmp_path_factory):
    port = free_port()
    server = gunicorn_server(environment=own_environment, port=port,
                             log_path=tmp_path_factory.mktemp("gunicorn") / "gunicorn.log").start()
    try:
        wait_until(lambda: port_is_open(port), timeout=60, what="gunicorn")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def test_it_answers_503_with_a_clear_message_while_the_database_is_down_and_recovers(own_postgres, web, api_token):
    headers = {"Authorization": f"Token {api_token}"}
    assert httpx.get(f"{web}/api/schema/", headers=headers, timeout=10).status_code == 200

    own_postgres.stop(mode="immediate")
    try:
        response = httpx.get(f"{web}/api/schema/", headers=headers, timeout=10)
        assert response.status_code == 503
        assert "database is unavailable" in response.json()["detail"]
        assert response.headers["Retry-After"]
    finally:
        own_postgres.start()

    # The token written before the outage is still there and the web reconnects by itself.
    recovered = wait_until(
        lambda: httpx.get(f"{web}/api/schema/", headers=headers, timeout=10).status_code == 200,
        timeout=30, what="the web to answer 200 after PostgreSQL came back",
    )
    assert recovered
    assert httpx.get(f"{web}/api/schema/", headers={"Authorization": "Token not-a-real-token"},
                     timeout=10).status_code == 401


def test_it_restores_every_vector_and_its_hnsw_index_from_a_pg_dump_backup(own_postgres, own_database, tmp_path):
    vectors = np.random.default_rng(6).standard_normal((300, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    literals = ["[" + ",".join(f"{value:.6g}" for value in vector) + "]" for vector in vectors]
    with own_postgres.connect("service") as connection:
        space_id = connection.execute(
            "INSERT INTO embeddings_embeddingspace "
            "(model_name, dimensions, prompt_version, state, created_at, endpoint_url) "
            "VALUES ('backup-test', 64, 'v1', 'retired', now(), '') RETURNING id").fetchone()[0]
        connection.execute(
            "INSERT INTO embeddings_vector (space_id, corpus, object_id, text_hash, embedding) "
            "SELECT %s, 'backup', object_id, '\\x00', embedding::halfvec "
            "FROM unnest(%s::bigint[], %s::text[]) AS incoming(object_id, embedding)",
            [space_id, list(range(len(literals))), literals])
        # The same partial HNSW index embeddings.store.ensure_index creates for a (space, corpus).
        connection.execute(f"CREATE INDEX backup_test_hnsw ON embeddings_vector USING hnsw "
                           f"((embedding::halfvec(64)) halfvec_cosine_ops) WHERE space_id = {space_id}")
    dump = tmp_path / "service.dump"
    subprocess.run([str(_binaries() / "pg_dump"), "--format=custom", "--file", str(dump),
                    own_postgres.url("service").replace("postgres://", "postgresql://")], check=True, timeout=120)
    restored_url = own_postgres.create_database("restored")
    subprocess.run([str(_binaries() / "pg_restore"), "--no-owner", "--dbname",
                    restored_url.replace("postgres://", "postgresql://"), str(dump)], check=True, timeout=120)

    query = literals[7]
    search = ("SELECT object_id FROM embeddings_vector WHERE space_id = %s "
              "ORDER BY embedding::halfvec(64) <=> %s::halfvec(64) LIMIT 5")
    answers = []
    for database in ("service", "restored"):
        with own_postgres.connect(database) as connection:
            stored = connection.execute("SELECT object_id, embedding::text FROM embeddings_vector "
                                        "WHERE space_id = %s ORDER BY object_id", [space_id]).fetchall()
            index_is_valid = connection.execute(
                "SELECT indisvalid FROM pg_index WHERE indexrelid = 'backup_test_hnsw'::regclass").fetchone()[0]
            assert index_is_valid, database
            answers.append((stored, [row[0] for row in connection.execute(search, [space_id, query]).fetchall()]))
    (original_vectors, original_neighbours), (restored_vectors, restored_neighbours) = answers
    assert len(restored_vectors) == 300
    assert restored_vectors == original_vectors
    assert restored_neighbours == original_neighbours and restored_neighbours[0] == 7
