"""Queueing work by task name once the transaction commits: services never import tasks/.

A task must see the rows it is about, so it is sent on commit (at once outside a transaction).
By name, the arrows run one way: tasks/ imports the services, never the reverse.
"""
from __future__ import annotations

from celery import current_app
from django.db import transaction


def queue_on_commit(task_name: str, *, kwargs: dict | None = None, countdown: float | None = None) -> None:
    """Send the task called `task_name` with these keyword arguments after the current transaction commits."""
    transaction.on_commit(lambda: send_task(task_name, kwargs=kwargs, countdown=countdown))


def send_task(task_name: str, *, kwargs: dict | None = None, countdown: float | None = None) -> None:
    app = current_app
    if app.conf.task_always_eager:
        # Eager mode (tests) runs the task here, as .delay() would; send_task would ignore the setting.
        app.loader.import_default_modules()  # the task modules a worker imports (config.celery autodiscovers)
        app.tasks[task_name].apply_async(kwargs=kwargs or {}, countdown=countdown)
        return
    app.send_task(task_name, kwargs=kwargs or {}, countdown=countdown)
