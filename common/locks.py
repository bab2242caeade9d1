"""PostgreSQL advisory locks: one run at a time of a periodic job or of one batch's import, across machines.

Session-level pg_try_advisory_lock: the lock dies with the database session, so a worker that is
killed holding it never leaves it behind (a row flag or a Redis key would need a timeout instead).
Two beats (celery issue 2856) then cost a skipped run, never two runs of one job at once.
"""
from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator

from django.db import DatabaseError, connection

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def advisory_lock(name: str) -> Iterator[bool]:
    """Try to take the lock called `name` without waiting; yields whether this session holds it now."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [name])
        acquired = bool(cursor.fetchone()[0])
    try:
        yield acquired
    finally:
        if acquired:
            # A session that broke while the job ran lost the lock with it: nothing to release then.
            with contextlib.suppress(DatabaseError), connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", [name])


def lock_is_free(name: str) -> bool:
    """Whether no session holds the lock `name` right now (taken and released at once)."""
    with advisory_lock(name) as acquired:
        return acquired


def one_run_at_a_time(job: str) -> Callable:
    """Decorate a periodic task: a run that finds `job` already running returns None and does nothing."""
    def decorate(function: Callable) -> Callable:
        @functools.wraps(function)
        def run(*args, **kwargs):
            with advisory_lock(f"periodic-job:{job}") as acquired:
                if not acquired:
                    logger.info("periodic job %s is already running elsewhere; this run does nothing", job)
                    return None
                return function(*args, **kwargs)
        return run
    return decorate
