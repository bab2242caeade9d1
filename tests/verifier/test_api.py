from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from verifier.models import DeclarationItem
from verifier.pipeline import process_pending

pytestmark = pytest.mark.django_db


@pytest.fixture
def submitter(django_user_model):
    user = django_user_model.objects.create_user(username="broker", password="x")
    user.user_permissions.add(Permission.objects.get(codename="add_declarationbatch"))
    return user


def api_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def test_it_accepts_items_reports_bad_ones_and_serves_their_verdicts(submitter, knowledge_base):
    api = api_for(submitter)

    created = api.post("/api/declarations/batches", {"mode": "check", "items": [
        {"id": "D-9", "item_no": "1", "description": knowledge_base["851762"], "hs_code": "851762", "port": "Ningbo"},
        {"id": "D-9", "item_no": "2", "description": "leather handbags", "quantity": "lots"},
    ]}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["items_created"], body["rows_rejected"]) == (1, 1)
    assert body["row_errors"] == [{"row_number": 2, "reason": "quantity 'lots' is not a number"}]

    process_pending()
    status = api.get(f"/api/declarations/batches/{body['batch']}").json()
    items = api.get(f"/api/declarations/batches/{body['batch']}/items").json()

    assert status["status"] == "done" and status["items_by_tier"] == {"auto_pass": 1}
    assert items["count"] == 1
    assert items["results"][0]["extra"] == {"port": "Ningbo"}
    assert items["results"][0]["verdict"]["recommended_code"] == "851762"
    assert items["results"][0]["verdict"]["tier"] == "auto_pass"


def test_it_refuses_submissions_without_the_permission_and_anonymous_callers(django_user_model):
    stranger = django_user_model.objects.create_user(username="stranger", password="x")

    denied = api_for(stranger).post("/api/declarations/batches", {"items": [{"description": "tea"}]}, format="json")
    anonymous = APIClient().post("/api/declarations/batches", {"items": [{"description": "tea"}]}, format="json")

    assert denied.status_code == 403 and anonymous.status_code == 401
    assert not DeclarationItem.objects.exists()


def test_it_hides_a_batch_from_another_submitter(submitter, django_user_model):
    other = django_user_model.objects.create_user(username="other-broker", password="x")
    other.user_permissions.add(Permission.objects.get(codename="add_declarationbatch"))
    batch_id = api_for(submitter).post("/api/declarations/batches", {"items": [{"description": "green tea"}]},
                                       format="json").json()["batch"]

    assert api_for(other).get(f"/api/declarations/batches/{batch_id}").status_code == 403


def test_it_rejects_a_request_without_items_and_says_why(submitter):
    response = api_for(submitter).post("/api/declarations/batches", {"mode": "guess", "items": []}, format="json")

    assert response.status_code == 400
    assert set(response.json()) == {"mode", "items"}


def test_the_openapi_schema_describes_the_declaration_endpoints(staff_user, client):
    client.force_login(staff_user)
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").content.decode()

    assert "/api/declarations/batches/{batch_id}/items" in schema
