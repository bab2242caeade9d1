"""Staff screens: the FAQ library (with a "try a question" box), the inbox, topic clusters.

Actions and saves call faq.services; vectors are never shown. Reviewers see the
library read-only unless they are also in "FAQ editors" (migrations 0002, 0004).
"""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Count, F
from django.http import HttpRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from embeddings.errors import EmbeddingError

from . import selectors, services
from .models import (
    CalibratedThreshold,
    Faq,
    FaqClassifier,
    FaqTranslation,
    FaqWording,
    InboxInquiry,
    Inquiry,
    TopicCluster,
)


class FaqWordingInline(admin.TabularInline):
    model = FaqWording
    extra = 1
    fields = ["text", "language", "source", "created_at"]
    readonly_fields = ["created_at"]


class FaqTranslationInline(admin.TabularInline):
    """The answer in other languages: customers asking in one are shown it (the inbox lists those missing)."""

    model = FaqTranslation
    extra = 1


class TryQuestionForm(forms.Form):
    question = forms.CharField(max_length=services.MAX_QUESTION_LENGTH, label="Try a question")


@admin.register(Faq)
class FaqAdmin(admin.ModelAdmin):
    list_display = ["question", "category", "language", "active", "wording_count", "updated_at"]
    list_filter = ["active", "language", "category"]
    search_fields = ["question", "answer", "external_id"]
    inlines = [FaqWordingInline, FaqTranslationInline]
    exclude = ["namespace"]
    change_list_template = "admin/faq/faq/change_list.html"

    def get_queryset(self, request: HttpRequest):
        return (super().get_queryset(request).filter(namespace="live")
                .annotate(wording_total=Count("wordings")))

    @admin.display(description="wordings", ordering="wording_total")
    def wording_count(self, faq: Faq) -> int:
        return faq.wording_total

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        """The list, with a box that matches a question against the live library and shows scores."""
        form = TryQuestionForm(request.GET if "question" in request.GET else None)
        context = {"try_form": form, **(extra_context or {})}
        if form.is_bound and form.is_valid():
            try:
                match = selectors.match_questions(questions=[form.cleaned_data["question"]], top_k=5)[0]
            except EmbeddingError as error:
                context["try_error"] = f"The embedding service is unavailable: {error}"
            else:
                faqs = selectors.faqs_by_id([candidate.faq_id for candidate in match.candidates])
                context["try_match"] = match
                context["try_rows"] = [(faqs[c.faq_id], c) for c in match.candidates if c.faq_id in faqs]
        # The admin treats unknown GET parameters as filters; take ours out before it sees them.
        if "question" in request.GET:
            request.GET = request.GET.copy()
            request.GET.pop("question")
        return super().changelist_view(request, extra_context=context)

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        if not change:
            # The question is a wording too: customers who ask it in those words must find it.
            FaqWording.objects.create(faq=obj, text=obj.question, language=obj.language,
                                      source=FaqWording.Source.QUESTION)
        services.queue_library_changed()

    def delete_model(self, request, obj) -> None:
        super().delete_model(request, obj)
        services.queue_library_changed()


class AnswerForm(forms.ModelForm):
    class Meta:
        model = Inquiry
        fields = ["staff_answer", "status"]
        widgets = {"staff_answer": forms.Textarea(attrs={"rows": 6})}


class InquiryAdminBase(admin.ModelAdmin):
    form = AnswerForm
    list_display = ["created_at", "question_excerpt", "status", "helpful", "matched_faq", "confidence",
                    "topic", "reply"]
    list_filter = ["status", "helpful", "language"]
    list_select_related = ["matched_faq", "topic_cluster"]
    search_fields = ["question", "contact", "name"]
    readonly_fields = ["question", "name", "contact", "language", "matched_faq", "match_score", "match_confidence",
                       "suggestion_links", "helpful", "answered_by", "answered_at", "topic_cluster", "created_at",
                       "matched_at", "reply", "reply_error"]
    raw_id_fields = ["matched_faq"]
    actions = ["turn_answer_into_faq", "add_as_wording"]
    date_hierarchy = "created_at"

    @admin.display(description="question")
    def question_excerpt(self, inquiry: Inquiry) -> str:
        return inquiry.question[:100]

    @admin.display(description="confidence", ordering="match_confidence")
    def confidence(self, inquiry: Inquiry) -> str:
        return "—" if inquiry.match_confidence is None else f"{inquiry.match_confidence:.2f}"

    @admin.display(description="suggestions shown")
    def suggestion_links(self, inquiry: Inquiry) -> str:
        """The FAQs the customer was offered, each a link to it, with its confidence."""
        if not inquiry.suggestions:
            return "—"
        return format_html("<ol>{}</ol>", format_html_join(
            "", '<li><a href="{}">{}</a> ({})</li>',
            ((reverse("admin:faq_faq_change", args=[s["faq_id"]]), s["question"],
              "—" if s.get("confidence") is None else f"{s['confidence']:.2f}") for s in inquiry.suggestions),
        ))

    @admin.display(description="reply to the customer")
    def reply(self, inquiry: Inquiry) -> str:
        """The outbox state of the latest reply: staff see a reply that is waiting, retried or failed."""
        latest = inquiry.replies.order_by("-created_at").first()
        if latest is None:
            return "—"
        if latest.state == latest.State.PENDING and latest.attempts:
            return f"retrying (attempt {latest.attempts + 1} after {latest.next_attempt_at:%H:%M})"
        if latest.state == latest.State.FAILED:
            return f"reply failed after {latest.attempts} attempts"
        return latest.get_state_display().lower()

    @admin.display(description="last reply error")
    def reply_error(self, inquiry: Inquiry) -> str:
        latest = inquiry.replies.order_by("-created_at").first()
        return latest.last_error if latest and latest.last_error else "—"

    @admin.display(description="topic (size)", ordering="topic_cluster__size")
    def topic(self, inquiry: Inquiry) -> str:
        cluster = inquiry.topic_cluster
        return f"{cluster.label[:40]} ({cluster.size})" if cluster else "—"

    def has_add_permission(self, request) -> bool:
        return False  # inquiries come from customers

    def save_model(self, request, obj, form, change) -> None:
        if "staff_answer" in form.changed_data and obj.staff_answer.strip():
            # The answer goes through the service: stored, status answered, mailed after commit.
            Inquiry.objects.filter(id=obj.id).update(status=obj.status)
            services.answer_inquiry(inquiry_id=obj.id, answer=obj.staff_answer, staff_user=request.user)
            self.message_user(request, "Answer saved; the reply is sent when the customer left an email address.")
            return
        super().save_model(request, obj, form, change)

    @admin.action(description="Turn the staff answer into a new FAQ", permissions=["change"])
    def turn_answer_into_faq(self, request: HttpRequest, queryset) -> None:
        if not request.user.has_perm("faq.add_faq"):
            self.message_user(request, "Only FAQ editors may add FAQs.", messages.ERROR)
            return
        created = 0
        for inquiry in queryset:
            try:
                services.create_faq_from_inquiry(inquiry_id=inquiry.id, staff_user=request.user)
                created += 1
            except ValueError as error:
                self.message_user(request, str(error), messages.WARNING)
        if created:
            self.message_user(request, f"{created} FAQ(s) created; matchable within a minute.")

    @admin.action(description="Add the question as a wording of an existing FAQ…", permissions=["change"])
    def add_as_wording(self, request: HttpRequest, queryset):
        if not request.user.has_perm("faq.add_faqwording"):
            self.message_user(request, "Only FAQ editors may change the library.", messages.ERROR)
            return None
        if "confirm" in request.POST:
            chosen = request.POST.get("faq_id_manual", "").strip() or request.POST.get("faq_id", "")
            try:
                faq_id = int(chosen)
                Faq.objects.get(id=faq_id, namespace="live")
            except (ValueError, Faq.DoesNotExist):
                self.message_user(request, f"No live FAQ with id {chosen!r}.", messages.ERROR)
                return None
            with transaction.atomic():
                for inquiry in queryset:
                    services.add_inquiry_as_wording(inquiry_id=inquiry.id, faq_id=faq_id)
            self.message_user(request, f"{queryset.count()} wording(s) added; matchable within a minute.")
            return HttpResponseRedirect(request.get_full_path())
        suggested = {s["faq_id"]: s["question"] for inquiry in queryset for s in inquiry.suggestions}
        return TemplateResponse(request, "admin/faq/add_as_wording.html", {
            **self.admin_site.each_context(request), "title": "Add as wording of an FAQ",
            "inquiries": queryset, "suggested": suggested.items(), "action": "add_as_wording",
            "opts": self.model._meta,
            "selected": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME),
        })


@admin.register(Inquiry)
class InquiryAdmin(InquiryAdminBase):
    pass


@admin.register(InboxInquiry)
class InboxAdmin(InquiryAdminBase):
    """Escalated and unhelpful inquiries, most common topic first, then newest."""

    ordering = [F("topic_cluster__size").desc(nulls_last=True), "-created_at"]
    change_list_template = "admin/faq/inboxinquiry/change_list.html"

    def get_list_display(self, request: HttpRequest):
        return [*super().get_list_display(request), "asked"]

    @admin.display(description="asked", ordering="asked")
    def asked(self, inquiry: Inquiry) -> int:
        """Inquiries asking the same question (repeats share this one row, the newest)."""
        return getattr(inquiry, "asked", None) or 1

    def get_queryset(self, request: HttpRequest):
        return selectors.inbox_inquiries()

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        """The inbox, with the FAQs customers were answered in another language than theirs above it."""
        context = {"missing_translations": selectors.missing_translations(), **(extra_context or {})}
        return super().changelist_view(request, extra_context=context)


@admin.register(TopicCluster)
class TopicClusterAdmin(admin.ModelAdmin):
    list_display = ["label", "size", "size_this_week", "size_last_week", "trend", "computed_at"]
    readonly_fields = ["label", "representative_questions", "size", "size_this_week", "size_last_week",
                       "computed_at"]

    @admin.display(description="trend (this week − last)")
    def trend(self, cluster: TopicCluster) -> str:
        return f"{cluster.trend:+d}"

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(FaqClassifier)
class FaqClassifierAdmin(admin.ModelAdmin):
    list_display = ["namespace", "space", "wording_count", "confidence_threshold", "fitted_at"]
    exclude = ["weights", "bias"]
    readonly_fields = ["namespace", "space", "faq_ids", "confidence_threshold", "library_fingerprint",
                       "wording_count", "cross_validation", "fitted_at"]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(CalibratedThreshold)
class CalibratedThresholdAdmin(admin.ModelAdmin):
    list_display = ["space", "task", "value", "source", "calibrated_at"]
