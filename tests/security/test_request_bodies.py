"""Request bodies are bounded in size and depth on every JSON endpoint: 400 with a message, never a 500.

Tests run with DEBUG off (pytest-django), as production does.
"""
from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from config.parsers import nesting_depth
from faq.models import Inquiry
from verifier.models import DeclarationBatch, DeclarationItem

pytestmark = pytest.mark.django_db

DEEP = "[" * 1000 + "]" * 1000
# Every endpoint that reads a JSON body, and whether it needs a token.
JSON_ENDPOINTS = [("faq:api-inquiries", False), ("faq:api-match", True), ("faq:api-pairs", True),
                  ("verifier:api-batches", True)]


def post(client: Client, endpoint: str, body: str | bytes, token: str | None, address: str):
    headers = {"HTTP_AUTHORIZATION": f"Token {token}"} if token else {}
    return client.post(reverse(endpoint), body, content_type="application/json", REMOTE_ADDR=address, **headers)


@pytest.mark.parametrize(("endpoint", "needs_token"), JSON_ENDPOINTS)
@pytest.mark.parametrize("body", [DEEP, '{"question": ' + DEEP + "}", '{"items": [' + "{" * 999 + "}" * 999 + "]}"],
                         ids=["array", "in-a-field", "objects"])
def test_it_refuses_json_nested_1000_levels_deep_with_400(endpoint, needs_token, body, declarant_token, address):
    client = Client(raise_request_exception=False)
    response = post(client, endpoint, body, declarant_token if needs_token else None, address)
    assert response.status_code == 400
    assert "at most 32 levels" in response.json()["detail"]
    assert not Inquiry.objects.exists() and not DeclarationBatch.objects.exists()


def test_it_accepts_nesting_up_to_the_bound(client, declarant_token, settings, address):
    nested_extra = {"port": "Ningbo"}
    # The body, the items list, the item and the innermost object are four levels; each "inner" adds one.
    for _ in range(settings.JSON_MAX_DEPTH - 4):
        nested_extra = {"inner": nested_extra}
    body = json.dumps({"mode": "check", "items": [{"description": "steel hex bolt", "extra": nested_extra}]})
    assert nesting_depth(body.encode()) == settings.JSON_MAX_DEPTH
    response = post(client, "verifier:api-batches", body, declarant_token, address)
    assert response.status_code == 201, response.content
    assert DeclarationItem.objects.count() == 1


def test_it_counts_only_brackets_outside_strings():
    assert nesting_depth(b'{"a": "[[[[{{{{", "b": [1, "\\"]]]"]}') == 2
    assert nesting_depth(b'"' + b"[" * 100 + b'"') == 0
    assert nesting_depth(b"") == 0


@pytest.mark.parametrize(("endpoint", "needs_token"), JSON_ENDPOINTS)
def test_it_refuses_a_body_above_the_size_limit_with_400_and_the_limit(
    endpoint, needs_token, declarant_token, settings, address
):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 4096
    body = json.dumps({"question": "a" * 5000, "text1": "a", "items": [{"description": "a" * 5000}]})
    response = post(Client(), endpoint, body, declarant_token if needs_token else None, address)
    assert response.status_code == 400
    assert "larger than the limit of 4096 bytes" in response.json()["detail"]
    assert not Inquiry.objects.exists() and not DeclarationItem.objects.exists()


def test_it_answers_an_unexpected_error_with_a_bare_500_when_debug_is_off(
    declarant_token, settings, monkeypatch, address
):
    settings.DEBUG = False

    def broken(**kwargs):
        raise RuntimeError("internal detail that must stay on the server")

    monkeypatch.setattr("faq.selectors.pair_similarity", broken)
    client = Client(raise_request_exception=False)
    response = post(client, "faq:api-pairs", json.dumps({"text1": "a", "text2": "b"}), declarant_token, address)
    assert response.status_code == 500
    body = response.content.decode()
    assert "Traceback" not in body and "internal detail" not in body
    assert settings.SECRET_KEY not in body and "DATABASES" not in body
