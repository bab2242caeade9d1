"""The service as production runs it: gunicorn, DEBUG off, behind one TLS proxy (TRUSTED_PROXY_COUNT=1).

Requests arrive over real HTTP from 127.0.0.1 (the proxy's address, to the server) with X-Forwarded-For and
X-Forwarded-Proto as the proxy sends them: the client's own header, then the address the proxy saw.
"""
from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from tests.security.test_deploy_settings import REPOSITORY_ROOT, production_environment

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

HOST = "service.example.com"
LIMIT = 5


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(django_db_setup, tmp_path_factory):
    """gunicorn on the test database, with a public inquiry limit of LIMIT a minute."""
    port = free_port()
    database = settings.DATABASES["default"]
    environment = production_environment()
    environment.update({
        "DATABASE_URL": f"postgres://{database['USER']}:{database['PASSWORD']}@{database['HOST']}:{database['PORT']}"
                        f"/{database['NAME']}",
        "TRUSTED_PROXY_COUNT": "1",
        "PUBLIC_RATE_LIMIT": f"{LIMIT}/minute",
        # Counts of this server only, apart from other runs sharing the Redis.
        "CACHE_URL": settings.CACHES["default"]["LOCATION"],
    })
    log = Path(tmp_path_factory.mktemp("gunicorn")) / "server.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "config.wsgi", "--bind", f"127.0.0.1:{port}",
             "--workers", "1", "--timeout", "60"],
            cwd=REPOSITORY_ROOT, env=environment, stdout=output, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if request(port, "GET", "/healthz", client="192.0.2.1")[0] == 200:
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"gunicorn did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


def request(port: int, method: str, path: str, *, client: str, claimed: str | None = None,
            body: str | None = None) -> tuple[int, str]:
    forwarded = f"{claimed}, {client}" if claimed else client
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body, headers={
            "Host": HOST, "X-Forwarded-For": forwarded, "X-Forwarded-Proto": "https",
            "Content-Type": "application/json",
        })
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def customer() -> str:
    return "203.0." + ".".join(str(part) for part in uuid.uuid4().bytes[:2])


def test_it_limits_a_customer_who_rotates_x_forwarded_for(server):
    rotating = customer()
    statuses = [request(server, "POST", "/api/faq/inquiries", client=rotating, claimed=f"10.9.{number}.1",
                        body="{}")[0] for number in range(LIMIT + 1)]
    assert statuses == [400] * LIMIT + [429]
    # The next customer through the same proxy is not held back by the first.
    assert request(server, "POST", "/api/faq/inquiries", client=customer(), body="{}")[0] == 400


def test_it_answers_json_nested_1000_levels_deep_with_400_and_no_traceback(server):
    status, body = request(server, "POST", "/api/faq/inquiries", client=customer(), body="[" * 1000 + "]" * 1000)
    assert status == 400
    assert "at most 32 levels" in json.loads(body)["detail"]
    assert "Traceback" not in body


def test_it_shows_no_debug_page_for_an_unknown_address(server):
    status, body = request(server, "GET", "/no-such-page/", client=customer())
    assert status == 404
    assert "Traceback" not in body and "URLconf" not in body and "DEBUG" not in body
