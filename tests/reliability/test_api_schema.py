"""Property-based requests against every operation of the OpenAPI schema: no request gets a 5xx.

schemathesis generates valid and invalid requests from /api/schema/ and sends them to
the WSGI application with a real API token, against the real database; the embedding
endpoint is the protocol double (healthy), so a 5xx can only be the service's own fault.
"""
from __future__ import annotations

import json

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error

from embeddings import client as client_module
from embeddings.client import CircuitBreaker, EmbeddingClient


@pytest.fixture
def api_token(db, django_user_model, own_double, settings, monkeypatch) -> str:
    own_double.reset()
    settings.EMBEDDING_BASE_URL = own_double.base_url
    settings.EMBEDDING_MODEL = own_double.model
    settings.EMBEDDING_DIMENSIONS = None
    monkeypatch.setattr(client_module, "_default_client", EmbeddingClient(
        base_url=own_double.base_url, model=own_double.model, timeout=2.0, max_retries=0,
        breaker=CircuitBreaker(threshold=1000, cooldown=0.0),
    ))
    user = django_user_model.objects.create_superuser(username="fuzzer", password="correct-horse-battery-1")
    return Token.objects.create(user=user).key


def generated_schema() -> dict:
    """The schema /api/schema/ serves, generated in-process (collection time: no request, no database)."""
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    return json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))


schema = schemathesis.openapi.from_dict(generated_schema())
schema.app = get_wsgi_application()


@pytest.fixture(autouse=True)
def requests_keep_the_test_transaction():
    # As Django's test client does: a request must not close the connection that holds the test's transaction.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_it_never_answers_a_server_error(case, api_token):
    case.call_and_validate(headers={"Authorization": f"Token {api_token}"}, checks=[not_a_server_error])
