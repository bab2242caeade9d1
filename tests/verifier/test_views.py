from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from verifier.models import DeclarationBatch, DeclarationItem
from verifier.pipeline import process_pending

from .factories import csv_bytes, make_item, make_verdict

pytestmark = pytest.mark.django_db


@pytest.fixture
def eager_tasks():
    from config.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def test_the_upload_page_imports_the_file_and_the_batch_page_reports_progress(
    client, staff_user, eager_tasks, knowledge_base, django_capture_on_commit_callbacks,
):
    from verifier.models import UploadedFileChunk

    data = csv_bytes([{"id": "U1", "description": knowledge_base["090210"], "hs_code": "090210"},
                      {"id": "U2", "description": "green tea", "hs_code": "09X"}]).getvalue()
    client.force_login(staff_user)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/declarations/upload/", {
            "file": SimpleUploadedFile("items.csv", data, content_type="text/csv"), "mode": "check",
        })
    batch = DeclarationBatch.objects.get()
    process_pending()  # what the worker does (the eager verify task ran inside the upload's transaction)
    status = client.get(f"/declarations/batches/{batch.pk}/status.json").json()
    page = client.get(f"/declarations/batches/{batch.pk}/").content.decode()

    assert response.status_code == 302 and response["Location"] == f"/declarations/batches/{batch.pk}/"
    assert "items.csv" in client.get("/declarations/upload/").content.decode()  # listed among recent batches
    assert status["items_created"] == 1 and status["rows_rejected"] == 1 and status["items_done"] == 1
    assert "<svg" in page and "Auto-pass: 1" in page
    assert "download them as CSV" in page
    assert not UploadedFileChunk.objects.exists()  # the stored upload is removed once imported


def test_staff_pages_need_a_staff_login(client, django_user_model):
    item = make_item()
    client.force_login(django_user_model.objects.create_user(username="clerk", password="x"))

    for url in ("/declarations/upload/", f"/declarations/batches/{item.batch_id}/",
                f"/declarations/items/{item.pk}/"):
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_the_item_page_escapes_declarant_text(client, staff_user):
    item = make_item(description_raw='<img src=x onerror="alert(1)"> cable')
    make_verdict(item=item, anomalies=[{"code": "novel_description", "reason": "unlike anything known"}])
    client.force_login(staff_user)

    page = client.get(f"/declarations/items/{item.pk}/").content.decode()

    assert "<img src=x" not in page and "&lt;img src=x" in page
    assert "unlike anything known" in page
    assert DeclarationItem.objects.count() == 1


def test_the_batch_page_shows_a_percentage_and_the_reason_of_a_failed_item(client, staff_user):
    batch = DeclarationBatch.objects.create(source=DeclarationBatch.Source.API, items_created=4,
                                            status=DeclarationBatch.Status.PROCESSING)
    make_item(batch=batch, status=DeclarationItem.Status.VERIFIED)
    failed = make_item(batch=batch, status=DeclarationItem.Status.FAILED, attempts=8,
                       last_error="ValueError: cannot vote on this item")
    make_item(batch=batch)
    make_item(batch=batch)
    client.force_login(staff_user)

    status = client.get(f"/declarations/batches/{batch.pk}/status.json").json()
    page = client.get(f"/declarations/batches/{batch.pk}/").content.decode()
    item_page = client.get(f"/declarations/items/{failed.pk}/").content.decode()

    assert (status["percent_done"], status["items_failed"]) == (50, 1)
    assert '<strong id="progress-percent">50%</strong>' in page
    assert "failed after 8 attempts" in item_page and "cannot vote on this item" in item_page


def test_a_batch_still_importing_is_not_shown_as_done(client, staff_user):
    batch = DeclarationBatch.objects.create(source=DeclarationBatch.Source.FILE)  # importing, nothing written yet
    client.force_login(staff_user)

    assert client.get(f"/declarations/batches/{batch.pk}/status.json").json()["percent_done"] == 0
