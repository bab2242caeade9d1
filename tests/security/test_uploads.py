"""Uploads need a staff login and stay within their size limits; an oversized file creates nothing."""
from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from verifier.models import DeclarationBatch, DeclarationItem

pytestmark = pytest.mark.django_db

CSV = b"id,item_no,description,hs_code\nU1,1,steel hex bolt M8,7318150000\n"


def test_it_sends_an_anonymous_upload_to_the_login_page(client):
    response = client.post(reverse("verifier:upload"), {"file": SimpleUploadedFile("a.csv", CSV), "mode": "check"})
    assert response.status_code == 302
    assert reverse("admin:login") in response["Location"]
    assert not DeclarationBatch.objects.exists()


def test_it_refuses_a_file_above_the_upload_limit_with_the_limit_in_the_message(admin_client, settings):
    settings.UPLOAD_MAX_BYTES = 1024 * 1024
    oversized = CSV + b"U2,1," + b"x" * (2 * 1024 * 1024) + b",7318150000\n"
    response = admin_client.post(reverse("verifier:upload"),
                                 {"file": SimpleUploadedFile("big.csv", oversized), "mode": "check"})
    assert response.status_code == 200
    assert "at most 1 MiB" in response.content.decode()
    assert not DeclarationBatch.objects.exists()
    assert not DeclarationItem.objects.exists()


def test_it_refuses_an_api_request_body_above_the_request_limit(client, admin_user, settings):
    from rest_framework.authtoken.models import Token

    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
    token = Token.objects.create(user=admin_user)
    items = [{"id": f"A{number}", "description": "bolt " * 20, "hs_code": "7318150000"} for number in range(2000)]
    response = client.post(reverse("verifier:api-batches"), {"mode": "check", "items": items},
                           content_type="application/json", HTTP_AUTHORIZATION=f"Token {token.key}")
    assert response.status_code in (400, 413)
    assert not DeclarationItem.objects.exists()


def test_it_accepts_a_file_within_the_limit(admin_client):
    response = admin_client.post(reverse("verifier:upload"),
                                 {"file": SimpleUploadedFile("ok.csv", CSV), "mode": "check"})
    assert response.status_code == 302
    assert DeclarationBatch.objects.count() == 1
