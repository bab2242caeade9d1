from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from embeddings.models import Vector
from verifier.models import KNOWLEDGE_CORPUS, KnowledgeEntry, Review, Verdict
from verifier.services import ReviewRefused, review_item, review_items

from .factories import make_item, make_verdict

pytestmark = pytest.mark.django_db


@pytest.fixture
def reviewer(django_user_model):
    user = django_user_model.objects.create_user(username="reviewer", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name="Reviewers"))
    return user


def test_it_records_each_action_in_an_append_only_audit_trail(reviewer):
    item = make_item(declared_code="610910")
    make_verdict(item=item, recommended_code="620520", tier=Verdict.Tier.WARNING)

    review_item(item=item, reviewer=reviewer, action=Review.Action.ACCEPT_RECOMMENDATION, reason="fabric is woven")
    review_item(item=item, reviewer=reviewer, action=Review.Action.SET_CODE, code="6205.20", reason="second look")

    trail = list(Review.objects.filter(item=item).order_by("id").values_list("action", "from_code", "to_code",
                                                                                 "tier_at_review"))
    assert trail == [("accept_recommendation", "610910", "620520", "warning"),
                     ("set_code", "620520", "620520", "warning")]
    review = Review.objects.first()
    review.reason = "edited"
    with pytest.raises(ValueError, match="append-only"):
        review.save()
    with pytest.raises(ValueError, match="append-only"):
        review.delete()


def test_an_approved_item_becomes_one_reference_and_is_indexed_after_commit(
    reviewer, embedding_double, django_capture_on_commit_callbacks, settings,
):
    from config.celery import app

    app.conf.task_always_eager = True
    try:
        item = make_item(description_raw="Bluetooth earphone without cable", declared_code="851762")
        make_verdict(item=item)
        with django_capture_on_commit_callbacks(execute=True):
            review_item(item=item, reviewer=reviewer, action=Review.Action.CONFIRM_DECLARED)
        with django_capture_on_commit_callbacks(execute=True):
            review_item(item=item, reviewer=reviewer, action=Review.Action.CONFIRM_DECLARED)
    finally:
        app.conf.task_always_eager = False

    entry = KnowledgeEntry.objects.get(source=KnowledgeEntry.Source.REFERENCE)
    assert (entry.hs_code, entry.display_text) == ("851762", "Bluetooth earphone without cable")
    assert Vector.objects.filter(corpus=KNOWLEDGE_CORPUS, object_id=entry.pk).exists()
    assert Verdict.objects.get(item=item).reviewed


def test_a_rejection_withdraws_the_reference_and_needs_a_reason(reviewer):
    item = make_item(declared_code="851762")
    make_verdict(item=item)
    review_item(item=item, reviewer=reviewer, action=Review.Action.CONFIRM_DECLARED)

    with pytest.raises(ReviewRefused, match="reason"):
        review_item(item=item, reviewer=reviewer, action=Review.Action.REJECT)
    review_item(item=item, reviewer=reviewer, action=Review.Action.REJECT, reason="duplicate line")

    assert not KnowledgeEntry.objects.filter(source=KnowledgeEntry.Source.REFERENCE).exists()
    assert Verdict.objects.get(item=item).final_code == ""


def test_bulk_review_applies_to_each_item_and_reports_the_refused_ones(reviewer):
    with_code = make_item(declared_code="090210")
    without_code = make_item(declared_code="")
    for item in (with_code, without_code):
        make_verdict(item=item)

    done, refusals = review_items(items=[with_code, without_code], reviewer=reviewer,
                                  action=Review.Action.CONFIRM_DECLARED)

    assert done == 1
    assert refusals == [f"item {without_code.pk} has no declared code to confirm"]


def test_the_review_queue_lists_unreviewed_items_riskiest_first(client, staff_user):
    calm = make_item(description_raw="green tea")
    risky = make_item(description_raw="<script>alert(1)</script> earphones")
    make_verdict(item=calm, tier=Verdict.Tier.MANUAL_REVIEW, risk=1.2)
    make_verdict(item=risky, tier=Verdict.Tier.WARNING, risk=2.9)
    client.force_login(staff_user)

    page = client.get("/admin/verifier/declarationitem/?reviewed=no").content.decode()

    assert page.index("earphones") < page.index("green tea")
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page


def test_the_item_page_shows_both_codes_and_records_a_review(client, reviewer):
    from .factories import make_hs_code

    make_hs_code("610910", "T-shirts of cotton, knitted")
    make_hs_code("620520", "Men's shirts of cotton, woven")
    item = make_item(description_raw="cotton shirt, woven", declared_code="610910")
    make_verdict(item=item, recommended_code="620520", tier=Verdict.Tier.WARNING,
                 evidence={"neighbours": [{"entry_id": 1, "code": "620520", "source": "nomenclature",
                                           "score": 0.93, "text": "Men's shirts of cotton, woven"}]})
    client.force_login(reviewer)

    page = client.get(f"/admin/verifier/declarationitem/{item.pk}/change/").content.decode()
    response = client.post(f"/admin/verifier/declarationitem/{item.pk}/review/",
                           {"action": "accept_recommendation", "code": "", "reason": "woven"})

    assert "T-shirts of cotton, knitted" in page and "Men&#x27;s shirts of cotton, woven" in page
    assert ">0.93</td>" in page  # similarities with two decimals
    assert response.status_code == 302
    assert Review.objects.get(item=item).to_code == "620520"


def test_reviewers_may_review_but_not_edit_thresholds_or_the_faq_library(reviewer):
    assert reviewer.has_perm("verifier.add_review")
    assert reviewer.has_perm("verifier.view_declarationitem")
    assert reviewer.has_perm("verifier.view_verdict")
    assert not reviewer.has_perm("verifier.change_routingthreshold")
    assert not reviewer.has_perm("verifier.change_verdict")
    assert not reviewer.has_perm("verifier.change_glossaryterm")
    # The FAQ library (faq, wordings, translations) is read-only for reviewers; the faq app grants the rest.
    library_edits = {f"faq.{action}_{model}" for action in ("add", "change", "delete")
                     for model in ("faq", "faqwording", "faqtranslation")}
    assert not library_edits & reviewer.get_all_permissions()


def test_every_verifier_admin_list_renders(client, staff_user):
    item = make_item()
    make_verdict(item=item)
    client.force_login(staff_user)

    for model in ("declarationbatch", "declarationitem", "verdict", "review", "routingthreshold", "glossaryterm",
                  "hscode", "knowledgeentry"):
        response = client.get(f"/admin/verifier/{model}/")
        assert response.status_code == 200, model
