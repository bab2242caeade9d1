"""Review in the admin: the queue by tier and risk, the item with its evidence, and review actions.

Actions call verifier.services.review_item; nothing here writes rows itself. Vectors
are never shown. All declarant text is rendered through templates (escaped).
"""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.db.models import F
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from .models import (
    DeclarationBatch,
    DeclarationItem,
    GlossaryTerm,
    HsCode,
    KnowledgeEntry,
    Review,
    RoutingThreshold,
    Verdict,
)
from .presentation import TIER_COLOURS, item_screen
from .services import ReviewRefused, requeue_failed_items, review_item, review_items


def can_review(request: HttpRequest) -> bool:
    return request.user.has_perm("verifier.add_review")


class TierFilter(admin.SimpleListFilter):
    title = "tier"
    parameter_name = "tier"

    def lookups(self, request, model_admin):
        return Verdict.Tier.choices

    def queryset(self, request, queryset):
        return queryset.filter(verdict__tier=self.value()) if self.value() else queryset


class ReviewedFilter(admin.SimpleListFilter):
    title = "review"
    parameter_name = "reviewed"

    def lookups(self, request, model_admin):
        return [("no", "Awaiting review"), ("yes", "Reviewed")]

    def queryset(self, request, queryset):
        if self.value() == "no":
            return queryset.filter(verdict__reviewed=False)
        if self.value() == "yes":
            return queryset.filter(verdict__reviewed=True)
        return queryset


class ReviewForm(forms.Form):
    # A blank first choice: the reviewer must pick an action, none is preselected for them.
    action = forms.ChoiceField(choices=[("", "— choose an action —"), *Review.Action.choices],
                               error_messages={"required": "Choose an action."})
    code = forms.CharField(required=False, max_length=16, help_text="For 'set another code'.")
    reason = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}),
                             help_text="Why (required to reject).")


class BulkReviewActionForm(ActionForm):
    """Extra fields beside the action menu: the code for "set another code" and a reason."""

    code = forms.CharField(required=False, max_length=16, label="code")
    reason = forms.CharField(required=False, max_length=500, label="reason")


class ReviewInline(admin.TabularInline):
    model = Review
    extra = 0
    can_delete = False
    fields = ("created_at", "reviewer", "action", "from_code", "to_code", "reason")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(DeclarationItem)
class DeclarationItemAdmin(admin.ModelAdmin):
    """The review queue: unreviewed items by tier, riskiest first."""

    list_display = ("id", "external_id", "item_no", "short_description", "declared_code", "recommended",
                    "confidence", "tier", "status")
    list_filter = (TierFilter, ReviewedFilter, "status", "batch__mode")
    list_select_related = ("verdict", "batch")
    search_fields = ("external_id", "description_raw", "declared_code")
    raw_id_fields = ("batch",)
    inlines = [ReviewInline]
    actions = ["confirm_declared", "accept_recommendation", "set_code", "reject", "retry_failed"]
    action_form = BulkReviewActionForm
    change_form_template = "admin/verifier/declarationitem/change_form.html"
    readonly_fields = [field.name for field in DeclarationItem._meta.fields]

    def get_queryset(self, request):
        # Riskiest first; items still waiting for a verdict go last (NULL risk would sort first in DESC).
        return super().get_queryset(request).order_by(F("verdict__risk").desc(nulls_last=True), "id")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        # Items are declarant data: nobody edits them; reviewers act through reviews.
        return False

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser

    @admin.display(description="description")
    def short_description(self, item: DeclarationItem) -> str:
        return item.description_raw[:80]

    @admin.display(description="recommended")
    def recommended(self, item: DeclarationItem) -> str:
        verdict = getattr(item, "verdict", None)
        return verdict.recommended_code if verdict else ""

    @admin.display(description="confidence")
    def confidence(self, item: DeclarationItem) -> str:
        verdict = getattr(item, "verdict", None)
        return f"{verdict.confidence:.2f}" if verdict else ""

    @admin.display(description="tier", ordering="verdict__tier")
    def tier(self, item: DeclarationItem) -> str:
        verdict = getattr(item, "verdict", None)
        if verdict is None:
            return "—"
        return format_html('<strong class="tier" data-tier="{}" style="color: {}">{}</strong>', verdict.tier,
                           TIER_COLOURS.get(verdict.tier, "inherit"), verdict.get_tier_display())

    # --- bulk actions -----------------------------------------------------------------
    def _bulk(self, request, queryset, action: str, default_reason: str = "") -> None:
        code = request.POST.get("code", "")
        reason = request.POST.get("reason", "") or default_reason
        done, refusals = review_items(items=queryset, reviewer=request.user, action=action, code=code, reason=reason)
        self.message_user(request, f"{done} item(s) reviewed.")
        for refusal in refusals[:10]:
            self.message_user(request, refusal, level=messages.WARNING)

    @admin.action(description="Confirm the declared code", permissions=["review"])
    def confirm_declared(self, request, queryset):
        self._bulk(request, queryset, Review.Action.CONFIRM_DECLARED)

    @admin.action(description="Accept the recommendation", permissions=["review"])
    def accept_recommendation(self, request, queryset):
        self._bulk(request, queryset, Review.Action.ACCEPT_RECOMMENDATION)

    @admin.action(description="Set the code typed beside the menu", permissions=["review"])
    def set_code(self, request, queryset):
        self._bulk(request, queryset, Review.Action.SET_CODE)

    @admin.action(description="Reject (not a valid declaration line)", permissions=["review"])
    def reject(self, request, queryset):
        self._bulk(request, queryset, Review.Action.REJECT, default_reason="rejected in bulk from the review queue")

    @admin.action(description="Retry failed items (verify them again)", permissions=["review"])
    def retry_failed(self, request, queryset):
        count = requeue_failed_items(item_ids=queryset.values_list("id", flat=True))
        self.message_user(request, f"{count} failed item(s) queued for verification again.")

    def has_review_permission(self, request) -> bool:
        return can_review(request)

    # --- the item page ----------------------------------------------------------------
    def get_urls(self):
        return [
            path("<int:item_id>/review/", self.admin_site.admin_view(self.review_view), name="verifier_item_review"),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        item = get_object_or_404(DeclarationItem.objects.select_related("verdict", "batch"), pk=object_id)
        extra_context = {
            **(extra_context or {}),
            "item": item,
            "screen": item_screen(item=item),
            "review_form": ReviewForm(),
            "can_review": can_review(request),
            "review_url": reverse("admin:verifier_item_review", args=[item.pk]),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def review_view(self, request, item_id: int):
        item = get_object_or_404(DeclarationItem, pk=item_id)
        change_url = reverse("admin:verifier_declarationitem_change", args=[item.pk])
        if request.method != "POST" or not can_review(request):
            self.message_user(request, "You may not review items.", level=messages.ERROR)
            return HttpResponseRedirect(change_url)
        form = ReviewForm(request.POST)
        if not form.is_valid():
            problems = " ".join(problem for field_problems in form.errors.values() for problem in field_problems)
            self.message_user(request, f"Review not recorded: {problems}", level=messages.ERROR)
            return HttpResponseRedirect(change_url)
        try:
            review_item(item=item, reviewer=request.user, action=form.cleaned_data["action"],
                        code=form.cleaned_data["code"], reason=form.cleaned_data["reason"])
        except ReviewRefused as error:
            self.message_user(request, f"Review not recorded: {error}", level=messages.ERROR)
        else:
            self.message_user(request, "Review recorded.")
        return HttpResponseRedirect(change_url)


@admin.register(Verdict)
class VerdictAdmin(admin.ModelAdmin):
    list_display = ("item", "tier", "recommended_code", "confidence", "margin", "best_similarity", "risk", "reviewed")
    list_filter = ("tier", "reviewed")
    list_select_related = ("item",)
    raw_id_fields = ("item", "space")
    readonly_fields = [field.name for field in Verdict._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Review)
class ReviewAdmin(admin.ModelAdmin):
    """The audit trail: read-only, append-only."""

    list_display = ("created_at", "reviewer", "item", "action", "from_code", "to_code", "tier_at_review")
    list_filter = ("action", "tier_at_review")
    list_select_related = ("reviewer", "item")
    raw_id_fields = ("item", "reviewer")
    readonly_fields = [field.name for field in Review._meta.fields]

    def has_add_permission(self, request):
        return False  # reviews are recorded from the item page, through the service

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(DeclarationBatch)
class DeclarationBatchAdmin(admin.ModelAdmin):
    list_display = ("id", "created_at", "source", "mode", "file_name", "status", "rows_read", "items_created",
                    "duplicates", "rows_rejected", "created_by")
    list_filter = ("status", "mode", "source", "is_reference")
    list_select_related = ("created_by",)
    raw_id_fields = ("created_by",)
    readonly_fields = [field.name for field in DeclarationBatch._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def view_on_site(self, batch):
        return reverse("verifier:batch-detail", args=[batch.pk])


@admin.register(RoutingThreshold)
class RoutingThresholdAdmin(admin.ModelAdmin):
    list_display = ("space", "chapter", "auto_pass_min_confidence", "review_margin", "novelty_max_similarity",
                    "calibrated_at")
    list_select_related = ("space",)
    raw_id_fields = ("space",)
    readonly_fields = ("calibrated_at", "calibration_note")


@admin.register(GlossaryTerm)
class GlossaryTermAdmin(admin.ModelAdmin):
    list_display = ("term", "replacement", "language", "updated_at")
    search_fields = ("term", "replacement")
    list_filter = ("language",)


@admin.register(HsCode)
class HsCodeAdmin(admin.ModelAdmin):
    list_display = ("code", "language", "level", "description")
    list_filter = ("level", "language")
    search_fields = ("code", "description")


@admin.register(KnowledgeEntry)
class KnowledgeEntryAdmin(admin.ModelAdmin):
    list_display = ("id", "hs_code", "source", "language", "display_text", "created_at")
    list_filter = ("source", "language")
    search_fields = ("hs_code", "display_text")
    raw_id_fields = ("hs_code_line",)
    list_select_related = ("hs_code_line",)
    readonly_fields = ("created_at",)
