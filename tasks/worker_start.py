"""A worker refuses to start where every task it took would fail: an unmigrated database, a wrong endpoint.

Refusing is loud and cheap; under compose the worker is restarted until the web container has migrated.
"""
from __future__ import annotations

from celery.signals import worker_init


def unapplied_migrations() -> list[str]:
    """Migrations the database still lacks, as `app.name`; raises DatabaseError when it cannot be reached."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return [f"{migration.app_label}.{migration.name}" for migration, _backwards in plan]


@worker_init.connect
def _refuse_to_start_where_tasks_would_fail(**kwargs) -> None:
    from django.db import DatabaseError

    from embeddings.errors import DimensionMismatch
    from embeddings.selectors import check_worker_endpoint

    # Celery logs and ignores exceptions from signal handlers; SystemExit stops the worker with the message.
    try:
        missing = unapplied_migrations()
    except DatabaseError as error:
        raise SystemExit(f"worker refused to start: the database is not reachable ({error}); "
                         "check DATABASE_URL") from error
    if missing:
        raise SystemExit(f"worker refused to start: the database is not migrated ({len(missing)} migrations "
                         f"missing, first {missing[0]}); run `python manage.py migrate`")
    try:
        check_worker_endpoint()
    except DimensionMismatch as error:
        raise SystemExit(f"worker refused to start: {error}") from error
