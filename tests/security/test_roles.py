"""Every role gets exactly its rights: each staff page and API against each caller, as the groups define them.

Callers: nobody; a customer's integration with its API token (not staff); a Reviewer, an FAQ editor and a
Knowledge curator (staff, logged in, not superusers); a superuser. Pages ignore API tokens, so the customer
is sent to the login page there like an anonymous visitor. Request bodies are kept invalid where the point
is the permission (an allowed caller gets 400, a refused one 401/403), so no test waits for the model.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from faq.models import Inquiry
from faq.views import inquiry_token
from verifier.models import DeclarationBatch, DeclarationItem, ImportRowError, KnowledgeEntry

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "customer_token", "reviewer", "faq_editor", "curator", "superuser")
REFERENCE_CSV = b"id,item_no,description,hs_code\nR1,1,steel hex bolt M8,731815\n"


@dataclass(frozen=True)
class Call:
    name: str
    method: str
    url: str  # formatted with the fixture rows: {batch}, {item}, {inquiry}, {inquiry_token}
    expected: tuple[int, ...]  # one status per role, in ROLES order
    body: object = None
    json: bool = False


PAGE_LOGIN = 302  # a page sends whoever is not logged in as staff to the admin login
API_LOGIN = 401

MATRIX = [
    # Public: anyone.
    Call("inquiry form", "GET", "/ask/", (200, 200, 200, 200, 200, 200)),
    Call("inquiry API (empty body)", "POST", "/api/faq/inquiries", (400, 400, 400, 400, 400, 400), {}, json=True),
    Call("API schema", "GET", "/api/schema/", (200, 200, 200, 200, 200, 200)),
    Call("API docs", "GET", "/api/docs/", (200, 200, 200, 200, 200, 200)),
    Call("liveness probe", "GET", "/healthz", (200, 200, 200, 200, 200, 200)),
    Call("customer's inquiry page", "GET", "/ask/{inquiry_token}/", (200, 200, 200, 200, 200, 200)),
    # Staff pages of the declarations.
    Call("upload page", "GET", "/declarations/upload/", (PAGE_LOGIN, PAGE_LOGIN, 403, 403, 200, 200)),
    Call("upload", "POST", "/declarations/upload/", (PAGE_LOGIN, PAGE_LOGIN, 403, 403, 302, 302), "check"),
    Call("reference upload", "POST", "/declarations/upload/", (PAGE_LOGIN, PAGE_LOGIN, 403, 403, 302, 302),
         "reference"),
    Call("batch page", "GET", "/declarations/batches/{batch}/", (PAGE_LOGIN, PAGE_LOGIN, 200, 403, 200, 200)),
    Call("batch progress", "GET", "/declarations/batches/{batch}/status.json",
         (PAGE_LOGIN, PAGE_LOGIN, 200, 403, 200, 200)),
    Call("error export", "GET", "/declarations/batches/{batch}/errors.csv",
         (PAGE_LOGIN, PAGE_LOGIN, 200, 403, 200, 200)),
    Call("item page", "GET", "/declarations/items/{item}/", (PAGE_LOGIN, PAGE_LOGIN, 200, 403, 200, 200)),
    # The admin.
    Call("admin index", "GET", "/admin/", (PAGE_LOGIN, PAGE_LOGIN, 200, 200, 200, 200)),
    Call("review queue", "GET", "/admin/verifier/declarationitem/", (PAGE_LOGIN, PAGE_LOGIN, 200, 403, 200, 200)),
    Call("item review page", "GET", "/admin/verifier/declarationitem/{item}/change/",
         (PAGE_LOGIN, PAGE_LOGIN, 200, 403, 200, 200)),
    Call("knowledge base", "GET", "/admin/verifier/knowledgeentry/", (PAGE_LOGIN, PAGE_LOGIN, 200, 403, 200, 200)),
    Call("thresholds", "GET", "/admin/verifier/routingthreshold/", (PAGE_LOGIN, PAGE_LOGIN, 403, 403, 200, 200)),
    Call("add a threshold", "GET", "/admin/verifier/routingthreshold/add/",
         (PAGE_LOGIN, PAGE_LOGIN, 403, 403, 200, 200)),
    Call("add a glossary term", "GET", "/admin/verifier/glossaryterm/add/",
         (PAGE_LOGIN, PAGE_LOGIN, 403, 403, 200, 200)),
    Call("FAQ library", "GET", "/admin/faq/faq/", (PAGE_LOGIN, PAGE_LOGIN, 200, 200, 403, 200)),
    Call("add an FAQ", "GET", "/admin/faq/faq/add/", (PAGE_LOGIN, PAGE_LOGIN, 403, 200, 403, 200)),
    Call("staff inbox", "GET", "/admin/faq/inboxinquiry/", (PAGE_LOGIN, PAGE_LOGIN, 200, 200, 403, 200)),
    Call("answer an inquiry", "GET", "/admin/faq/inboxinquiry/{inquiry}/change/",
         (PAGE_LOGIN, PAGE_LOGIN, 200, 200, 403, 200)),
    Call("embedding spaces", "GET", "/admin/embeddings/embeddingspace/", (PAGE_LOGIN, PAGE_LOGIN, 403, 403, 403, 200)),
    # APIs: a token or a staff session.
    Call("FAQ match API", "POST", "/api/faq/match", (API_LOGIN, 400, 400, 400, 400, 400), {}, json=True),
    Call("pair API", "POST", "/api/faq/pairs", (API_LOGIN, 400, 400, 400, 400, 400), {}, json=True),
    Call("submit declarations API", "POST", "/api/declarations/batches", (API_LOGIN, 400, 403, 403, 400, 400),
         {"items": []}, json=True),
    Call("batch API (another's batch)", "GET", "/api/declarations/batches/{batch}",
         (API_LOGIN, 403, 200, 403, 200, 200)),
    Call("batch items API (another's batch)", "GET", "/api/declarations/batches/{batch}/items",
         (API_LOGIN, 403, 200, 403, 200, 200)),
]


@pytest.fixture
def rows(django_user_model):
    """A batch uploaded by someone else, with an item and a rejected row; an escalated customer inquiry."""
    owner = django_user_model.objects.create_user(username="owner")
    batch = DeclarationBatch.objects.create(source=DeclarationBatch.Source.API, created_by=owner,
                                            status=DeclarationBatch.Status.DONE)
    item = DeclarationItem.objects.create(batch=batch, external_id="D1", item_no="1", identity_key="m" * 64,
                                          description_raw="steel hex bolt", declared_code="731815")
    ImportRowError.objects.create(batch=batch, row_number=2, reason="description is empty", raw="D2,1,,731815")
    inquiry = Inquiry.objects.create(question="where is my parcel?", status=Inquiry.Status.ESCALATED,
                                     matched_at=timezone.now())
    return {"batch": batch.pk, "item": item.pk, "inquiry": inquiry.pk, "inquiry_token": inquiry_token(inquiry)}


@pytest.fixture
def caller(request, address):
    """A test client acting as the role named by the test's parameter, from an address of its own."""
    role = request.param
    client = Client(REMOTE_ADDR=address)
    if role == "customer_token":
        token = request.getfixturevalue("declarant_token")
        client.defaults["HTTP_AUTHORIZATION"] = f"Token {token}"
    elif role != "anonymous":
        client.force_login(request.getfixturevalue(role))
    return client


def send(client: Client, call: Call, rows: dict):
    url = call.url.format(**rows)
    if call.method == "GET":
        return client.get(url)
    if call.body in ("check", "reference"):
        upload = SimpleUploadedFile("items.csv", REFERENCE_CSV, content_type="text/csv")
        reference = {"reference": "on"} if call.body == "reference" else {}
        return client.post(url, {"file": upload, "mode": "check", **reference})
    if call.json:
        return client.post(url, call.body, content_type="application/json")
    return client.post(url, call.body or {})


@pytest.mark.parametrize(
    ("call", "caller", "expected"),
    [pytest.param(call, role, status, id=f"{call.name}-{role}")
     for call in MATRIX for role, status in zip(ROLES, call.expected, strict=True)],
    indirect=["caller"],
)
def test_it_answers_each_role_with_exactly_its_rights(call, caller, expected, rows):
    response = send(caller, call, rows)
    assert response.status_code == expected, response.content[:300]
    if expected == PAGE_LOGIN and call.method == "GET" and not call.url.startswith("/ask"):
        assert response["Location"].startswith(reverse("admin:login"))


def test_it_refuses_a_reviewer_upload_and_creates_no_batch_and_no_knowledge_entry(
    client, reviewer, django_capture_on_commit_callbacks
):
    knowledge_before = KnowledgeEntry.objects.count()
    client.force_login(reviewer)
    upload = SimpleUploadedFile("reference.csv", REFERENCE_CSV, content_type="text/csv")
    with django_capture_on_commit_callbacks(execute=True) as queued:
        response = client.post(reverse("verifier:upload"), {"file": upload, "mode": "check", "reference": "on"})
    assert response.status_code == 403
    assert queued == []
    assert not DeclarationBatch.objects.exists()
    assert KnowledgeEntry.objects.count() == knowledge_before


def test_it_refuses_a_reference_upload_to_staff_who_may_only_submit_declarations(client, django_user_model):
    from django.contrib.auth.models import Permission

    officer = django_user_model.objects.create_user(username="officer", is_staff=True)
    officer.user_permissions.add(Permission.objects.get(codename="add_declarationbatch"))
    client.force_login(officer)
    upload = SimpleUploadedFile("reference.csv", REFERENCE_CSV, content_type="text/csv")
    response = client.post(reverse("verifier:upload"), {"file": upload, "mode": "check", "reference": "on"})
    assert response.status_code == 403
    assert not DeclarationBatch.objects.exists()

    checked = client.post(reverse("verifier:upload"), {
        "file": SimpleUploadedFile("items.csv", REFERENCE_CSV, content_type="text/csv"), "mode": "check",
    })
    assert checked.status_code == 302
    assert DeclarationBatch.objects.get().is_reference is False


def test_it_lets_a_curator_upload_a_reference_batch(client, curator):
    client.force_login(curator)
    upload = SimpleUploadedFile("reference.csv", REFERENCE_CSV, content_type="text/csv")
    response = client.post(reverse("verifier:upload"), {"file": upload, "mode": "check", "reference": "on"})
    assert response.status_code == 302
    batch = DeclarationBatch.objects.get()
    assert (batch.is_reference, batch.created_by) == (True, curator)


def group_permissions(name: str) -> set[str]:
    return {f"{app}.{codename}" for app, codename in
            Group.objects.get(name=name).permissions.values_list("content_type__app_label", "codename")}


def test_it_gives_only_curators_the_upload_rights_among_staff_roles():
    upload_rights = {"verifier.add_declarationbatch", "verifier.upload_reference_batch"}
    assert upload_rights <= group_permissions("Knowledge curators")
    assert not upload_rights & group_permissions("Reviewers")
    assert not upload_rights & group_permissions("FAQ editors")
    assert group_permissions("Declarants") == {"verifier.add_declarationbatch"}


def test_it_keeps_curators_out_of_the_faq_library_and_the_review_actions():
    curator_rights = group_permissions("Knowledge curators")
    assert not {permission for permission in curator_rights if permission.startswith("faq.")}
    assert "verifier.add_review" not in curator_rights
    assert not {"verifier.change_knowledgeentry", "verifier.add_knowledgeentry"} & curator_rights
