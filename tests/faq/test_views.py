"""The public inquiry form: answer, suggestions, escalation, feedback, and what protects it."""
import re
import uuid

import pytest
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from faq import views
from faq.models import Inquiry


def ask(client: Client, question: str, **extra) -> str:
    response = client.post(reverse("faq:ask"), {"question": question, **extra}, follow=True)
    assert response.status_code == 200
    return response.content.decode()


def test_it_shows_the_matched_answer_for_a_paraphrase(client, faq_library):
    page = ask(client, "怎么换绑手机号?")
    assert escape(faq_library["phone"].answer) in page and 'id="feedback-form"' in page


def test_it_shows_the_answer_in_the_customers_language_for_a_cross_lingual_match(client, faq_library):
    page = ask(client, "How can I change the mobile number linked to my account?")
    assert "Account settings &gt; Phone number" in page


def test_it_shows_suggestions_for_a_vague_question_and_escalates_on_request(client, faq_library):
    page = ask(client, "help")
    assert 'id="suggestions"' in page and 'id="answer"' not in page
    escalate_url = re.search(r'action="([^"]+/escalate)"', page).group(1)
    page = client.post(escalate_url, follow=True).content.decode()
    assert 'id="escalated"' in page
    assert Inquiry.objects.get().status == Inquiry.Status.ESCALATED


def test_it_records_that_an_answer_did_not_help(client, faq_library):
    page = ask(client, "怎么换绑手机号?")
    feedback_url = re.search(r'action="([^"]+/feedback)"', page).group(1)
    client.post(feedback_url, {"helpful": "no"})
    inquiry = Inquiry.objects.get()
    assert inquiry.helpful is False and inquiry.status == Inquiry.Status.ESCALATED


def test_it_saves_the_question_and_promises_an_answer_when_the_embedding_endpoint_is_down(
        client, faq_library, embedding_endpoint):
    embedding_endpoint.down()
    page = ask(client, "怎么换绑手机号?", contact="li@example.com")
    assert 'id="pending"' in page and "li@example.com" in page
    assert Inquiry.objects.filter(matched_at__isnull=True).count() == 1


def test_it_escapes_whatever_the_customer_typed(client, faq_library, embedding_endpoint):
    embedding_endpoint.down()
    page = ask(client, "<script>alert(1)</script> refund?", name="<b>Eve</b>", contact="<img src=x onerror=1>")
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page


def test_it_refuses_an_over_long_question_without_saving_it(client, db):
    response = client.post(reverse("faq:ask"), {"question": "x" * 1001})
    assert response.status_code == 200 and "at most 1000 characters" in response.content.decode()
    assert not Inquiry.objects.exists()


def test_it_requires_a_csrf_token(faq_library):
    response = Client(enforce_csrf_checks=True).post(reverse("faq:ask"), {"question": "怎么换绑手机号?"})
    assert response.status_code == 403 and not Inquiry.objects.exists()


def test_it_rate_limits_each_client(client, faq_library, embedding_endpoint, settings):
    embedding_endpoint.down()  # the limit is the point, not the matching
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {
        **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "inquiry_form": "2/minute"}}
    address = "10." + ".".join(str(part) for part in uuid.uuid4().bytes[:3])  # a count of this test's own
    codes = [client.post(reverse("faq:ask"), {"question": f"question number {n}"}, REMOTE_ADDR=address).status_code
             for n in range(3)]
    assert codes == [302, 302, 429]
    assert Inquiry.objects.count() == 2


def test_it_lets_customers_in_when_the_rate_limit_cache_is_down(client, faq_library, embedding_endpoint, settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": embedding_endpoint.dead.replace("http", "redis").rsplit("/", 1)[0]}}
    embedding_endpoint.down()
    assert client.post(reverse("faq:ask"), {"question": "is anyone there?"}).status_code == 302


def test_it_hides_inquiries_behind_a_signed_token(client, faq_library):
    inquiry = Inquiry.objects.create(question="private question")
    assert client.get(f"/ask/{inquiry.id}/").status_code == 404
    assert client.get(f"/ask/{views.inquiry_token(inquiry)}/").status_code == 200


@pytest.mark.parametrize("method", ["get"])
def test_it_serves_the_form_without_login(client, db, method):
    response = getattr(client, method)(reverse("faq:ask"))
    assert response.status_code == 200 and 'name="csrfmiddlewaretoken"' in response.content.decode()
