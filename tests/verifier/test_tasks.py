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
    stuck_since = timezone.now() - timedelta(seconds=settings.STUCK_WORK_TIMEOUT_SECONDS + 5)
    DeclarationItem.objects.update(claimed_at=stuck_since)

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
    batch = DeclarationBatch.objects.create(source=DeclarationBatch.Source.API,
                                            status=DeclarationBatch.Status.PROCESSING)
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
    from common import queueing
    from verifier.services import queue_verification

    settings.VERIFICATION_PARALLEL_TASKS = parallel
    queued = []
    monkeypatch.setattr(queueing, "send_task", lambda name, **options: queued.append(name))

    with django_capture_on_commit_callbacks(execute=True):
        queue_verification(items=items)

    assert queued == ["verification.verify_pending_items"] * expected


# --- stuck imports, retries, one periodic run at a time (issue 13) ------------------------------


def stored_upload_batch(content: bytes, django_capture_on_commit_callbacks) -> DeclarationBatch:
    """An upload accepted by the web whose import message was then lost (nothing ran it)."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from verifier.services import accept_upload

    with django_capture_on_commit_callbacks(execute=False):
        return accept_upload(uploaded_file=SimpleUploadedFile("items.csv", content), mode=DeclarationBatch.Mode.CHECK)


def upload_rows(count: int) -> bytes:
    return ("id,item_no,description\n" + "".join(f"U-{n},1,cotton towel {n}\n" for n in range(count))).encode()


def test_the_sweeper_resumes_an_import_whose_worker_was_lost_and_it_ends_with_true_counts(
    eager_tasks, settings, monkeypatch, django_capture_on_commit_callbacks,
):
    from verifier import services

    batch = stored_upload_batch(upload_rows(10), django_capture_on_commit_callbacks)
    monkeypatch.setattr(services, "IMPORT_CHUNK_ROWS", 4)
    real_create_items = services._create_items
    calls = []

    def worker_dies_in_third_chunk(**arguments):
        calls.append(1)
        if len(calls) == 3:
            raise SystemExit("worker killed")  # not an Exception: no retry, as when the process dies
        return real_create_items(**arguments)

    monkeypatch.setattr(services, "_create_items", worker_dies_in_third_chunk)
    with pytest.raises(SystemExit):
        services.import_uploaded_batch(batch_id=batch.pk)
    monkeypatch.setattr(services, "_create_items", real_create_items)
    assert DeclarationItem.objects.filter(batch=batch).count() == 8
    DeclarationBatch.objects.filter(pk=batch.pk).update(
        import_attempted_at=timezone.now() - timedelta(seconds=settings.STUCK_WORK_TIMEOUT_SECONDS + 5))

    with django_capture_on_commit_callbacks(execute=True):
        sweep_stuck_items.delay()

    batch.refresh_from_db()
    assert batch.status != DeclarationBatch.Status.IMPORTING
    assert (batch.rows_read, batch.items_created, batch.duplicates, batch.import_attempts) == (10, 10, 0, 2)
    assert DeclarationItem.objects.filter(batch=batch).count() == 10


def test_an_import_that_never_finishes_is_failed_with_the_reason(settings, django_capture_on_commit_callbacks):
    from verifier.services import MAX_IMPORT_ATTEMPTS, resume_stuck_imports

    batch = stored_upload_batch(upload_rows(2), django_capture_on_commit_callbacks)
    DeclarationBatch.objects.filter(pk=batch.pk).update(
        import_attempts=MAX_IMPORT_ATTEMPTS, import_attempted_at=timezone.now() - timedelta(hours=1))

    resume_stuck_imports(older_than_seconds=60)

    batch.refresh_from_db()
    assert batch.status == DeclarationBatch.Status.FAILED
    assert f"started {MAX_IMPORT_ATTEMPTS} times" in batch.failure_reason


def test_the_sweeper_leaves_an_import_alone_while_a_worker_holds_it(django_capture_on_commit_callbacks):
    from verifier.services import import_lock_name, resume_stuck_imports

    batch = stored_upload_batch(upload_rows(2), django_capture_on_commit_callbacks)
    an_hour_ago = timezone.now() - timedelta(hours=1)
    DeclarationBatch.objects.filter(pk=batch.pk).update(import_attempted_at=an_hour_ago)

    with other_session_holding(import_lock_name(batch.pk)):
        resume_stuck_imports(older_than_seconds=60)
    batch.refresh_from_db()
    assert batch.import_attempted_at == an_hour_ago  # left alone: its import is running

    resume_stuck_imports(older_than_seconds=60)
    batch.refresh_from_db()
    assert batch.import_attempted_at > an_hour_ago  # re-queued once nobody holds it


def test_the_import_task_retries_a_run_that_failed_part_way(eager_tasks, monkeypatch,
                                                            django_capture_on_commit_callbacks):
    from django.db import OperationalError

    from verifier import services

    batch = stored_upload_batch(upload_rows(3), django_capture_on_commit_callbacks)
    real_import_file = services.import_declaration_file
    failures = ["the database restarted"]

    def fails_once(**arguments):
        if failures:
            raise OperationalError(failures.pop())
        return real_import_file(**arguments)

    monkeypatch.setattr(services, "import_declaration_file", fails_once)

    import_uploaded_batch.delay(batch_id=batch.pk)

    batch.refresh_from_db()
    assert (batch.items_created, batch.import_attempts) == (3, 2)


def other_session_holding(lock_name: str):
    """A second database session (another beat's worker) holding this advisory lock."""
    import contextlib

    import psycopg
    from django.db import connection

    @contextlib.contextmanager
    def held():
        parameters = connection.get_connection_params()
        parameters.pop("cursor_factory", None)
        parameters.pop("context", None)
        with psycopg.connect(**parameters, autocommit=True) as other:
            other.execute("SELECT pg_advisory_lock(hashtext(%s))", [lock_name])
            yield
    return held()


def test_a_second_sweep_while_one_runs_does_nothing():
    """Two beats send the periodic job twice at once: the run that finds it running leaves everything alone."""
    item = make_item()
    claim_items()
    DeclarationItem.objects.update(claimed_at=timezone.now() - timedelta(hours=1))

    with other_session_holding("periodic-job:verification.sweep_stuck_items"):
        assert sweep_stuck_items() is None
    item.refresh_from_db()
    assert (item.status, item.attempts) == (DeclarationItem.Status.PROCESSING, 0)

    assert sweep_stuck_items() == 1  # the next beat's run, once the first is done
