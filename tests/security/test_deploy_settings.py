"""Production settings pass Django's deployment checklist, and the repository holds no secret."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from django.conf import settings

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]


def production_environment() -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    environment.update({
        "DEBUG": "false",
        # A throwaway key of production strength, made up for this check only.
        "SECRET_KEY": "check-deploy-" + "k7Qz9xW2vB4nM8pL1sD6fG3hJ5aR0tYu" * 2,
        "ALLOWED_HOSTS": "service.example.com",
        "CSRF_TRUSTED_ORIGINS": "https://service.example.com",
        "DATABASE_URL": settings.DATABASE_URL,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "EMBEDDING_BASE_URL": settings.EMBEDDING_BASE_URL,
    })
    return environment


def test_it_passes_the_deployment_checklist_with_production_settings():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPOSITORY_ROOT, env=production_environment(), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_it_refuses_to_start_in_production_without_a_secret_key():
    environment = production_environment()
    del environment["SECRET_KEY"]
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=REPOSITORY_ROOT, env=environment,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


# Patterns are assembled from parts so this file does not match itself.
SECRET_PATTERNS = {
    "private key": re.compile("-----BEGIN ([A-Z]+ )?" + "PRIVATE KEY-----"),
    "AWS access key": re.compile(r"\b" + "AKIA" + r"[0-9A-Z]{16}\b"),
    "OpenAI-style API key": re.compile(r"\b" + "sk-" + r"(proj-)?[A-Za-z0-9_\-]{32,}"),
    "GitHub token": re.compile(r"\b" + "gh[pousr]_" + r"[A-Za-z0-9]{36,}\b"),
    "Slack token": re.compile(r"\b" + "xox[abposr]-" + r"[A-Za-z0-9\-]{10,}"),
    "Hugging Face token": re.compile(r"\b" + "hf_" + r"[A-Za-z0-9]{34,}\b"),
    "password in a URL": re.compile(r"://[^/\s:@]+:(?!\$\{|<|\*|password@|change-me)[^/\s:@]{6,}@[\w.-]+"),
}


def tracked_text_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files", "-z"], cwd=REPOSITORY_ROOT, capture_output=True, check=True).stdout
    paths = [REPOSITORY_ROOT / name for name in names.decode().split("\0") if name]
    return [path for path in paths if path.is_file() and path.stat().st_size < 5_000_000]


def test_it_finds_no_secret_in_any_tracked_file():
    findings = []
    for path in tracked_text_files():
        text = path.read_bytes().decode("utf-8", errors="ignore")
        for what, pattern in SECRET_PATTERNS.items():
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                findings.append(f"{path.relative_to(REPOSITORY_ROOT)}:{line}: {what}")
    assert findings == []


def test_it_tracks_no_environment_file_or_key_file():
    suspicious = [path.name for path in tracked_text_files()
                  if path.name == ".env" or path.suffix in {".pem", ".key", ".p12", ".pfx"}
                  or path.name.startswith("id_rsa")]
    assert suspicious == []


def test_the_secret_scan_recognises_a_planted_key():
    planted = "-----BEGIN RSA " + "PRIVATE KEY-----\nMIIEow...\n"
    assert SECRET_PATTERNS["private key"].search(planted)
    assert SECRET_PATTERNS["password in a URL"].search("postgres://service:" + "hunter2hunter2@db.internal/service")
    assert not SECRET_PATTERNS["password in a URL"].search("postgres://postgres@127.0.0.1:54329/service")
