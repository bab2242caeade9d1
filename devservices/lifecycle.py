"""Stopping what this process started: used by the test session so CI leaves no stray server."""
from __future__ import annotations

from . import embedding_server, postgres, redis
from .processes import STARTED_HERE


def stop_services_started_here() -> list[str]:
    stopped = []
    if "embedding" in STARTED_HERE and embedding_server.stop_embedding_server():
        stopped.append("embedding")
    if "redis" in STARTED_HERE and redis.stop_redis():
        stopped.append("redis")
    if "postgres" in STARTED_HERE:
        from django.db import connections

        connections.close_all()
        if postgres.stop_postgres():
            stopped.append("postgres")
    STARTED_HERE.clear()
    return stopped
