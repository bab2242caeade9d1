"""Embedded stand-ins for PostgreSQL/pgvector, Redis and the embedding endpoint.

Used only when the matching setting (DATABASE_URL, CELERY_BROKER_URL,
EMBEDDING_BASE_URL) is unset, so that a fresh clone runs without Docker, a GPU
or a model hub. Each service runs as its own detached process, shared by the web
server, workers, beat and management commands, and keeps its state under var/.
"""
