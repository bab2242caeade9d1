"""The public inquiry form and API: CSRF on the form, per-client rate limits on both, bounded request bodies."""
from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from faq.models import Inquiry
from tests.security.conftest import unique_address

pytestmark = pytest.mark.django_db


def test_it_refuses_a_form_post_without_a_csrf_token():
    client = Client(enforce_csrf_checks=True)
    response = client.post(reverse("faq:ask"), {"question": "How do I return an item?"},
                           REMOTE_ADDR=unique_address())
    assert response.status_code == 403
    assert not Inquiry.objects.exists()


def test_it_accepts_a_form_post_that_carries_the_csrf_token_from_the_form():
    client = Client(enforce_csrf_checks=True)
    address = unique_address()
    page = client.get(reverse("faq:ask"), REMOTE_ADDR=address)
    token = page.cookies[settings.CSRF_COOKIE_NAME].value
    assert 'name="csrfmiddlewaretoken"' in page.content.decode()
    response = client.post(reverse("faq:ask"), {"question": "How do I return an item?", "csrfmiddlewaretoken": token},
                           REMOTE_ADDR=address)
    assert response.status_code == 302
    assert Inquiry.objects.count() == 1


def test_it_rate_limits_form_posts_per_client_and_not_other_clients(client):
    address = unique_address()
    limit = int(settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["inquiry_form"].split("/")[0])
    statuses = [client.post(reverse("faq:ask"), {"question": ""}, REMOTE_ADDR=address).status_code
                for _ in range(limit + 1)]
    assert 429 not in statuses[:-1]
    assert statuses[-1] == 429
    assert client.post(reverse("faq:ask"), {"question": ""}, REMOTE_ADDR=unique_address()).status_code != 429


def test_it_rate_limits_the_public_inquiry_api_per_client(client):
    limit = int(settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["public_inquiries"].split("/")[0])
    address = unique_address()
    statuses = [client.post(reverse("faq:api-inquiries"), {}, content_type="application/json",
                            REMOTE_ADDR=address).status_code for _ in range(limit + 1)]
    assert 429 not in statuses[:-1]
    assert statuses[-1] == 429


def test_it_refuses_a_request_body_above_the_upload_limit(client, django_user_model):
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=django_user_model.objects.create_user(username="api", password="x-long-pass-1"))
    oversized = '{"question": "' + "a" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1) + '"}'
    response = client.post(reverse("faq:api-match"), oversized, content_type="application/json",
                           HTTP_AUTHORIZATION=f"Token {token.key}")
    assert response.status_code in (400, 413)
