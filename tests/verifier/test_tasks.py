from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tasks.schedule import BEAT_SCHEDULE
from tasks.verification import import_uploaded_batch, sweep_stuck_items
from verifier.models import DeclarationBatch, DeclarationItem, Verdict
from verifier.pipeline import claim_items

from .factories import make_item

pytestmark = pytest.mark.django_db


@pytest.fixture
def eager_tasks():
    from config.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def test_the_beat_schedule_sweeps_stuck_items_every_minute():
    entry = BEAT_SCHEDULE["verification-sweep-stuck-items"]

    assert entry["task"] == sweep_stuck_items.name and entry["schedule"] <= 60


def test_the_sweeper_requeues_work_of_a_dead_worker_and_it_gets_verified(knowledge_base, eager_tasks, settings):
    item = make_item(description_raw=knowledge_base["090210"], declared_code="090210")
    claim_items()  # a worker claimed it, then died
    DeclarationItem.objects.update(claimed_at=timezone.now() - timedelta(seconds=settings.STUCK_WORK_TIMEOUT_SECONDS + 5))

    assert sweep_stuck_items.delay().get() == 1

    item.refresh_from_db()
    assert item.status == DeclarationItem.Status.VERIFIED and item.attempts == 1
    assert Verdict.objects.get(item=item).tier == Verdict.Tier.AUTO_PASS


def test_importing_an_upload_twice_imports_it_once(django_capture_on_commit_callbacks):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from verifier.models import UploadedFileChunk
    from verifier.services import accept_upload

    with django_capture_on_commit_callbacks(execute=False):
        batch = accept_upload(uploaded_file=SimpleUploadedFile("items.csv", b"description,hs_code\ngreen tea,090210\n"),
                              mode=DeclarationBatch.Mode.CHECK)

    assert import_uploaded_batch(batch_id=batch.pk) == 1
    assert import_uploaded_batch(batch_id=batch.pk) == 0
    assert DeclarationItem.objects.filter(batch=batch).count() == 1
    assert not UploadedFileChunk.objects.filter(batch=batch).exists()  # the stored file is dropped once imported


def test_the_sweeper_closes_a_batch_whose_items_are_all_verified():
    batch = DeclarationBatch.objects.create(source=DeclarationBatch.Source.API, status=DeclarationBatch.Status.PROCESSING)
    make_item(batch=batch, status=DeclarationItem.Status.VERIFIED)

    sweep_stuck_items()

    batch.refresh_from_db()
    assert batch.status == DeclarationBatch.Status.DONE


@pytest.mark.parametrize(("items", "parallel", "expected"), [(1, 4, 1), (500, 4, 1), (501, 4, 2), (5000, 4, 4),
                                                             (5000, 8, 8), (100_000, 2, 2)])
def test_a_batch_gets_a_verification_task_per_chunk_up_to_one_per_worker_process(
    items, parallel, expected, settings, monkeypatch, django_capture_on_commit_callbacks,
):
    """Every worker process should take a share of a large batch; a small one needs one task."""
    from tasks import verification
    from verifier.services import queue_verification

    settings.VERIFICATION_PARALLEL_TASKS = parallel
    queued = []
    monkeypatch.setattr(verification.verify_pending_items, "delay", lambda: queued.append("task"))

    with django_capture_on_commit_callbacks(execute=True):
        queue_verification(items=items)

    assert len(queued) == expected
