"""Uploads wait in PostgreSQL, written with their batch, and the size limit holds while the body streams in."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import FileUploadHandler

from verifier.models import DeclarationBatch, DeclarationItem, UploadedFileChunk
from verifier.services import UPLOAD_CHUNK_BYTES, accept_upload, import_uploaded_batch

pytestmark = pytest.mark.django_db

CSV = b"id,description,hs_code\nU1,steel hex bolt M8,7318150000\n"


class BrokenUpload(SimpleUploadedFile):
    """A file whose second piece cannot be read (the client went away while it was being stored)."""

    def chunks(self, chunk_size=None):
        yield b"id,description,hs_code\n"
        raise OSError("connection reset while reading the upload")


def test_a_failure_while_storing_leaves_no_batch_and_no_piece(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as queued, pytest.raises(OSError):
        accept_upload(uploaded_file=BrokenUpload("items.csv", b""), mode=DeclarationBatch.Mode.CHECK)
    assert not DeclarationBatch.objects.exists() and not UploadedFileChunk.objects.exists()
    assert queued == []  # no import task for a batch that does not exist


def test_a_worker_with_no_access_to_the_web_servers_files_imports_the_upload(settings, tmp_path,
                                                                           django_capture_on_commit_callbacks):
    settings.MEDIA_ROOT = tmp_path / "web"
    rows = b"".join(b"U%d,steel hex bolt M%d,7318150000\n" % (number, number) for number in range(60_000))
    content = b"id,description,hs_code\n" + rows
    assert len(content) > 2 * UPLOAD_CHUNK_BYTES  # stored as several pieces, read back in order
    with django_capture_on_commit_callbacks(execute=False):
        batch = accept_upload(uploaded_file=SimpleUploadedFile("items.csv", content), mode=DeclarationBatch.Mode.CHECK)
    assert UploadedFileChunk.objects.filter(batch=batch).count() == 3
    assert not (tmp_path / "web").exists()  # nothing written to the web server's disk

    settings.MEDIA_ROOT = tmp_path / "worker"  # another container
    report = import_uploaded_batch(batch_id=batch.pk)
    assert report.items_created == 60_000 and report.rows_rejected == 0
    assert DeclarationItem.objects.filter(batch=batch, external_id="U59999").exists()


class BytesStoredSpy(FileUploadHandler):
    """Sits where the storing handlers sit and counts what reaches them."""

    received = 0

    def receive_data_chunk(self, raw_data, start):
        BytesStoredSpy.received += len(raw_data)
        return raw_data

    def file_complete(self, file_size):
        return None


def test_the_limit_stops_storing_a_file_while_it_streams_in(client, django_user_model, settings):
    settings.UPLOAD_MAX_BYTES = 1024 * 1024
    settings.FILE_UPLOAD_HANDLERS = [settings.FILE_UPLOAD_HANDLERS[0], f"{__name__}.BytesStoredSpy",
                                     *settings.FILE_UPLOAD_HANDLERS[1:]]
    BytesStoredSpy.received = 0
    clerk = django_user_model.objects.create_user(username="clerk", password="x-unused-x", is_staff=True)
    clerk.user_permissions.add(*Permission.objects.filter(codename__in=["add_declarationbatch",
                                                                        "view_declarationbatch"]))
    client.force_login(clerk)
    oversized = CSV + b"U2," + b"x" * (8 * 1024 * 1024) + b",7318150000\n"

    response = client.post("/declarations/upload/", {"file": SimpleUploadedFile("big.csv", oversized), "mode": "check"})

    assert response.status_code == 200
    assert "the file is larger than the upload limit: at most 1 MiB" in response.content.decode()
    assert BytesStoredSpy.received <= settings.UPLOAD_MAX_BYTES + 64 * 1024  # not the 8 MiB sent
    assert not DeclarationBatch.objects.exists()
