"""The public inquiry form: no login; the customer's page is addressed by a signed token, not the row id."""
from __future__ import annotations

from django.core import signing
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods, require_POST

from config.client_address import client_address
from config.throttling import InquiryFormThrottle

from . import selectors, services
from .forms import FeedbackForm, InquiryForm
from .models import Inquiry

TOKEN_SALT = "faq.inquiry"
# Names of the languages answers are written in (faq.languages.detect_language), in the page's language.
ANSWER_LANGUAGE_NAMES = {"zh": _("Chinese"), "en": _("English")}


def answer_language_name(language: str) -> str:
    return str(ANSWER_LANGUAGE_NAMES.get(language, language))


def inquiry_token(inquiry: Inquiry) -> str:
    return signing.dumps(inquiry.id, salt=TOKEN_SALT)


def inquiry_from_token(token: str) -> Inquiry:
    try:
        inquiry_id = signing.loads(token, salt=TOKEN_SALT, max_age=30 * 24 * 3600)
        return Inquiry.objects.select_related("matched_faq").get(id=inquiry_id)
    except (signing.BadSignature, Inquiry.DoesNotExist) as error:
        raise Http404("no such inquiry") from error


@require_http_methods(["GET", "POST"])
def ask(request: HttpRequest) -> HttpResponse:
    form = InquiryForm(request.POST or None)
    if request.method == "POST":
        fingerprint = services.client_fingerprint(address=client_address(request))
        if not InquiryFormThrottle().allow_request(request, view=None):
            return render(request, "faq/ask.html", {"form": form, "rate_limited": True}, status=429)
        if form.is_valid():
            inquiry = services.submit_inquiry(**form.cleaned_data, fingerprint=fingerprint)
            return redirect("faq:inquiry", token=inquiry_token(inquiry))
    return render(request, "faq/ask.html", {"form": form})


def inquiry_page(request: HttpRequest, token: str) -> HttpResponse:
    inquiry = inquiry_from_token(token)
    context: dict = {"inquiry": inquiry, "token": token}
    if inquiry.status == Inquiry.Status.ANSWERED and inquiry.staff_answer:
        context["state"] = "staff_answer"
    elif inquiry.status == Inquiry.Status.ANSWERED and inquiry.matched_faq:
        answer, language = inquiry.matched_faq.answer_in(inquiry.language)
        # Where the FAQ has no answer in the customer's language the page says so and shows the one it has.
        context.update(state="answered", faq=inquiry.matched_faq, answer=answer, answer_language=language,
                       faq_question=selectors.question_in(inquiry.matched_faq, language),
                       answer_in_other_language=language != inquiry.language,
                       answer_language_name=answer_language_name(language))
    elif inquiry.status == Inquiry.Status.ESCALATED:
        context["state"] = "escalated"
    elif inquiry.matched_at is None:
        context["state"] = "pending"
    else:
        faqs = selectors.faqs_by_id([suggestion["faq_id"] for suggestion in inquiry.suggestions])
        shown = [(faqs[s["faq_id"]], faqs[s["faq_id"]].answer_in(inquiry.language))
                 for s in inquiry.suggestions[:3] if s["faq_id"] in faqs]
        context.update(state="suggestions", suggestions=[
            {"faq": faq, "question": selectors.question_in(faq, language), "answer": answer,
             "answer_language": language,
             "answer_language_name": answer_language_name(language),
             "answer_in_other_language": language != inquiry.language}
            for faq, (answer, language) in shown
        ])
    return render(request, "faq/inquiry.html", context)


@require_POST
def feedback(request: HttpRequest, token: str) -> HttpResponse:
    inquiry = inquiry_from_token(token)
    form = FeedbackForm(request.POST)
    if form.is_valid():
        services.record_feedback(inquiry_id=inquiry.id, helpful=form.cleaned_data["helpful"] == "yes")
    return redirect("faq:inquiry", token=token)


@require_POST
def escalate(request: HttpRequest, token: str) -> HttpResponse:
    inquiry = inquiry_from_token(token)
    services.escalate_inquiry(inquiry_id=inquiry.id)
    return redirect("faq:inquiry", token=token)
