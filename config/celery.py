"""The Celery app, configured from Django settings (CELERY_* names)."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("service")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Task modules live in the tasks/ package, one module per domain.
app.autodiscover_tasks(["tasks"], related_name="embedding")
app.autodiscover_tasks(["tasks"], related_name="verification")
app.autodiscover_tasks(["tasks"], related_name="faq")
app.autodiscover_tasks(["tasks"], related_name="worker_start")


@app.on_configure.connect
def _start_embedded_services(sender: Celery, **kwargs) -> None:
    # Before the worker, beat or any celery command reads its settings and connects (development only).
    from .development import start_embedded_services

    start_embedded_services()


@app.on_after_finalize.connect
def _install_beat_schedule(sender: Celery, **kwargs) -> None:
    from tasks.schedule import BEAT_SCHEDULE

    sender.conf.beat_schedule = BEAT_SCHEDULE
