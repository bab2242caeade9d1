"""compose.yaml is the production shape: valid as compose reads it, required secrets enforced, images pinned."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.production.compose_file import MissingVariable, environment_list, load_compose

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ("migrate", "web", "worker", "beat")
APP_SETTINGS = {
    "DATABASE_URL", "CELERY_BROKER_URL", "EMBEDDING_BASE_URL", "EMBEDDING_MODEL", "EMBEDDING_API_KEY",
    "EMBEDDING_DIMENSIONS", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS",
}
REQUIRED = {"POSTGRES_PASSWORD": "pw-for-tests", "SECRET_KEY": "k" * 50, "ALLOWED_HOSTS": "customs.example.org"}


def services(**environment: str) -> dict:
    return load_compose({**REQUIRED, **environment})["services"]


def test_it_defines_the_production_services():
    assert set(services()) == {"postgres", "redis", "sglang", "migrate", "web", "worker", "beat"}


def test_it_gives_every_app_service_all_settings_and_production_mode():
    for name in APP_SERVICES:
        environment = environment_list(services()[name])
        assert APP_SETTINGS <= set(environment), name
        assert environment["DEBUG"] == "false"
        assert environment["DATABASE_URL"] == ("postgres://service:" + REQUIRED["POSTGRES_PASSWORD"]
                                               + "@postgres:5432/service")


@pytest.mark.parametrize("variable", sorted(REQUIRED))
@pytest.mark.parametrize("value", [None, ""])
def test_it_refuses_to_start_without_a_required_secret(variable, value):
    environment = {**REQUIRED}
    if value is None:
        del environment[variable]
    else:
        environment[variable] = value
    with pytest.raises(MissingVariable, match=f"required variable {variable} is missing a value: set {variable}"):
        load_compose(environment)


def test_it_pins_every_image_and_runs_postgresql_18_with_pgvector_084_or_later():
    for name, service in services().items():
        if "image" in service and "build" not in service:
            image = service["image"]
            assert ":" in image and not image.endswith((":latest", ":stable")), f"{name}: {image} is not pinned"
            assert re.search(r":v?\d", image), f"{name}: {image} names no version"
    pgvector, postgres = re.fullmatch(r"pgvector/pgvector:(\d+\.\d+\.\d+)-pg(\d+)",
                                      services()["postgres"]["image"]).groups()
    assert tuple(map(int, pgvector.split("."))) >= (0, 8, 4) and postgres == "18"


def test_it_keeps_postgresql_18_data_in_the_volume():
    # PostgreSQL 18 images keep data in /var/lib/postgresql/18/docker; a volume at .../data would not hold it.
    assert "postgres-data:/var/lib/postgresql" in services()["postgres"]["volumes"]


def test_it_serves_qwen3_embedding_with_sglang_on_a_gpu():
    sglang = services()["sglang"]
    command = " ".join(sglang["command"])
    assert "sglang.launch_server" in command
    assert "--model-path Qwen/Qwen3-Embedding-0.6B" in command and "--is-embedding" in command
    assert "/health" in " ".join(sglang["healthcheck"]["test"])
    assert sglang["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]


def test_it_migrates_once_before_any_app_process_starts():
    every = services()
    assert every["migrate"]["command"][-3:] == ["manage.py", "migrate", "--no-input"]
    assert every["migrate"]["restart"] == "no"
    for name in ("web", "worker", "beat"):
        assert every[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name
        assert "migrate" not in " ".join(every[name]["command"]), f"{name} must not run migrations itself"


def test_it_starts_apps_only_after_their_dependencies_are_healthy():
    every = services()
    for name in ("web", "worker"):
        conditions = {dep: spec["condition"] for dep, spec in every[name]["depends_on"].items()}
        assert conditions["postgres"] == conditions["redis"] == conditions["sglang"] == "service_healthy"
    for name, service in every.items():
        if name != "migrate":  # one-shot: its exit status is its health
            assert "healthcheck" in service, name


def test_it_runs_exactly_one_beat():
    assert services()["beat"]["deploy"]["replicas"] == 1


def docker_compose(environment: dict) -> subprocess.CompletedProcess:
    """`docker-compose config` (Debian's, installed by `make test`): compose's own reading, no daemon needed."""
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is missing: `make browser` installs it (apt-get install docker-compose)"
    return subprocess.run([binary, "-f", "compose.yaml", "config", "-q"], cwd=ROOT, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", **environment})


def test_docker_compose_accepts_it():
    result = docker_compose(REQUIRED)

    assert result.returncode == 0, result.stderr


def test_docker_compose_refuses_it_without_a_required_secret():
    result = docker_compose({name: value for name, value in REQUIRED.items() if name != "SECRET_KEY"})

    assert result.returncode != 0 and "set SECRET_KEY in .env" in result.stderr
