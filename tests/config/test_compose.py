"""compose.yaml is the production shape: valid, and every app service is configured from the environment."""
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
APP_SETTINGS = {
    "DATABASE_URL", "CELERY_BROKER_URL", "EMBEDDING_BASE_URL", "EMBEDDING_MODEL", "EMBEDDING_API_KEY",
    "EMBEDDING_DIMENSIONS", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS",
}


def load_compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_it_defines_the_production_services():
    assert set(load_compose()["services"]) == {"postgres", "redis", "sglang", "web", "worker", "beat"}


def test_it_gives_every_app_service_all_settings():
    services = load_compose()["services"]
    for name in ("web", "worker", "beat"):
        assert APP_SETTINGS <= set(services[name]["environment"]), name


def test_it_serves_qwen3_embedding_with_sglang_on_a_gpu():
    sglang = load_compose()["services"]["sglang"]
    command = " ".join(sglang["command"])
    assert "sglang.launch_server" in command
    assert "--model-path Qwen/Qwen3-Embedding-0.6B" in command and "--is-embedding" in command
    assert "/health" in " ".join(sglang["healthcheck"]["test"])
    assert sglang["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]


def test_it_starts_apps_only_after_their_dependencies_are_healthy():
    services = load_compose()["services"]
    for name in ("web", "worker"):
        conditions = {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}
        assert conditions["postgres"] == conditions["redis"] == conditions["sglang"] == "service_healthy"
    for service in services.values():
        assert "healthcheck" in service


def test_it_runs_exactly_one_beat():
    assert load_compose()["services"]["beat"]["deploy"]["replicas"] == 1


def test_docker_compose_accepts_it_where_installed():
    if shutil.which("docker-compose") is None:
        return  # Debian's docker-compose package is optional on developer machines.
    result = subprocess.run(["docker-compose", "-f", "compose.yaml", "config", "-q"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
