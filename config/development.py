"""Development only: the embedded services stand in for every service URL left unset (devservices/).

The entry points call start_embedded_services() before Django or Celery connects to anything: manage.py,
wsgi/asgi, the Celery app (on_configure), the test session. The settings module never does, so importing
it starts no process. In production every URL is set (and DEBUG is false): nothing here imports devservices,
which is not in the image.
"""
from __future__ import annotations

import os

SERVICE_URLS = ("DATABASE_URL", "CELERY_BROKER_URL", "EMBEDDING_BASE_URL")


def unset_service_urls() -> list[str]:
    return [name for name in SERVICE_URLS
            if not (os.environ.get(name) or "").strip() and not os.environ.get(f"{name}_FILE")]


def start_embedded_services() -> list[str]:
    """Start (or reuse) the embedded service of each unset URL; returns the URLs' names it covered."""
    unset = unset_service_urls()
    debug = os.environ.get("DEBUG")
    if not unset or debug is not None and debug.strip().lower() in {"0", "false", "no", "off", ""}:
        return []  # production: settings refuse unset URLs with DEBUG off, with a message that names them
    if "DATABASE_URL" in unset:
        from devservices.postgres import ensure_postgres

        ensure_postgres()
    if "CELERY_BROKER_URL" in unset:
        from devservices.redis import ensure_redis

        ensure_redis()
    if "EMBEDDING_BASE_URL" in unset:
        from devservices.embedding_server import ensure_embedding_server

        ensure_embedding_server()
    return unset
