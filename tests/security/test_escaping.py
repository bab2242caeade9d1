"""Text typed by declarants and customers is rendered escaped on every page that shows it, admin included."""
from __future__ import annotations

import pytest
from django.urls import reverse

from verifier.models import DeclarationBatch, DeclarationItem

pytestmark = pytest.mark.django_db

SCRIPT = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
ATTRIBUTE_BREAKOUT = '"><img src=x onerror=alert(2)>'


@pytest.fixture
def hostile_item():
    batch = DeclarationBatch.objects.create(source=DeclarationBatch.Source.FILE, file_name=f"{SCRIPT}.csv")
    return DeclarationItem.objects.create(
        batch=batch, external_id="X1", item_no="1", identity_key="x" * 64, product_name=ATTRIBUTE_BREAKOUT,
        description_raw=f"bolt {SCRIPT}", declared_code="7318150000",
    )


def assert_escaped(html: str) -> None:
    assert SCRIPT not in html
    assert "<img src=x" not in html
    assert ESCAPED in html


def test_it_escapes_declarant_text_on_the_admin_review_queue(admin_client, hostile_item):
    response = admin_client.get(reverse("admin:verifier_declarationitem_changelist"))
    assert response.status_code == 200
    assert_escaped(response.content.decode())


def test_it_escapes_declarant_text_on_the_admin_item_page(admin_client, hostile_item):
    response = admin_client.get(reverse("admin:verifier_declarationitem_change", args=[hostile_item.pk]))
    assert response.status_code == 200
    assert_escaped(response.content.decode())


def test_it_escapes_the_uploaded_file_name_on_the_admin_batch_list(admin_client, hostile_item):
    response = admin_client.get(reverse("admin:verifier_declarationbatch_changelist"))
    assert response.status_code == 200
    assert_escaped(response.content.decode())


def test_it_escapes_a_customer_question_on_the_admin_inquiry_pages(admin_client):
    from faq.models import Inquiry

    inquiry = Inquiry.objects.create(question=f"refund? {SCRIPT}", language="en")
    listing = admin_client.get(reverse("admin:faq_inquiry_changelist"))
    detail = admin_client.get(reverse("admin:faq_inquiry_change", args=[inquiry.pk]))
    assert listing.status_code == detail.status_code == 200
    assert_escaped(listing.content.decode())
    assert_escaped(detail.content.decode())


def test_it_escapes_a_customer_question_on_the_public_inquiry_page(client):
    from faq.models import Inquiry
    from faq.views import inquiry_token

    inquiry = Inquiry.objects.create(question=f"refund? {SCRIPT}", language="en")
    response = client.get(reverse("faq:inquiry", args=[inquiry_token(inquiry)]))
    assert response.status_code == 200
    assert_escaped(response.content.decode())
