"""Verdict reuse: an item judged exactly like an earlier one copies its verdict; any change to what was judged
against (the knowledge base, the thresholds, the declared code, the mode) makes a new judgement."""
from __future__ import annotations

import pytest

from embeddings.store import active_space
from verifier.models import DeclarationBatch, DeclarationItem, KnowledgeEntry, RoutingThreshold, Verdict
from verifier.pipeline import process_pending
from verifier.reuse import judgement_context
from verifier.routing import load_thresholds

from .factories import make_batch, make_item

pytestmark = pytest.mark.django_db

MACHINE_FIELDS = ("recommended_code", "recommended_level", "confidence", "margin", "best_similarity", "tier", "risk",
                  "anomalies", "evidence", "final_code", "space_id", "judgement_key")


def machine_fields(verdict: Verdict) -> tuple:
    return tuple(getattr(verdict, name) for name in MACHINE_FIELDS)


def judge(**fields) -> Verdict:
    item = make_item(**fields)
    process_pending()
    item.refresh_from_db()
    assert item.status == DeclarationItem.Status.VERIFIED
    return item.verdict


def test_a_repeated_item_copies_the_earlier_verdict_without_embedding_or_searching(knowledge_base, embedding_double):
    first = judge(description_raw="Bluetooth earphones, wireless", declared_code="851762")
    requests_before = embedding_double.embedding_requests

    second = judge(description_raw="Bluetooth earphones, wireless", declared_code="851762")

    assert embedding_double.embedding_requests == requests_before  # the query cache was not even asked
    assert second.pk != first.pk
    assert machine_fields(second) == machine_fields(first)
    assert second.judgement_key is not None
    assert (second.reviewed, second.writes) == (False, 1)


def test_repeats_within_one_chunk_are_judged_once_and_get_the_same_verdict(knowledge_base):
    batch = make_batch(status=DeclarationBatch.Status.PROCESSING)
    items = [make_item(batch=batch, description_raw=knowledge_base["610910"], declared_code="610910")
             for _ in range(3)]

    assert process_pending() == 3

    verdicts = [Verdict.objects.get(item=item) for item in items]
    assert all(machine_fields(verdict) == machine_fields(verdicts[0]) for verdict in verdicts)
    assert verdicts[0].tier == Verdict.Tier.AUTO_PASS


@pytest.mark.parametrize("change", ["declared_code", "mode"])
def test_another_declared_code_or_mode_is_judged_anew(knowledge_base, embedding_double, change):
    first = judge(description_raw=knowledge_base["610910"], declared_code="610910")
    other = {"declared_code": "420221"} if change == "declared_code" else {
        "batch": make_batch(mode=DeclarationBatch.Mode.SUGGEST), "declared_code": "610910"}

    second = judge(description_raw=knowledge_base["610910"], **other)

    assert second.judgement_key != first.judgement_key
    if change == "declared_code":
        assert second.tier == Verdict.Tier.WARNING and first.tier == Verdict.Tier.AUTO_PASS


def test_a_change_to_the_knowledge_base_makes_a_new_judgement(knowledge_base):
    description = "cotton knitted t-shirts for men"
    first = judge(description_raw=description, declared_code="610910")
    space = active_space()
    context_before = judgement_context(space=space, thresholds=load_thresholds(space))

    # An approved reference that says exactly this, under another code: the next judgement must see it.
    from verifier.services import index_knowledge_entries

    entry = KnowledgeEntry.objects.create(source=KnowledgeEntry.Source.REFERENCE, hs_code="420221", chapter="42",
                                          language="en", text=description, display_text=description)
    index_knowledge_entries(entry_ids=[entry.pk])
    second = judge(description_raw=description, declared_code="610910")

    assert judgement_context(space=space, thresholds=load_thresholds(space)) != context_before
    assert second.judgement_key != first.judgement_key
    assert second.evidence["neighbours"][0]["code"] == "420221"
    assert first.evidence["neighbours"][0]["code"] != "420221"


def test_new_thresholds_make_a_new_judgement(knowledge_base):
    first = judge(description_raw=knowledge_base["090210"], declared_code="090210")
    RoutingThreshold.objects.create(space=active_space(), chapter="", auto_pass_min_confidence=0.99,
                                    review_margin=0.5, novelty_max_similarity=0.5)

    second = judge(description_raw=knowledge_base["090210"], declared_code="090210")

    assert second.judgement_key != first.judgement_key


def test_a_reviewed_verdict_is_never_copied(knowledge_base):
    first = judge(description_raw=knowledge_base["420221"], declared_code="420221")
    Verdict.objects.filter(pk=first.pk).update(reviewed=True, final_code="420222")

    second = judge(description_raw=knowledge_base["420221"], declared_code="420221")

    assert second.final_code == "420221"
    assert second.judgement_key == first.judgement_key  # judged again, alike, from its own evidence


def test_an_item_whose_verdict_was_reviewed_after_it_was_found_is_judged_again(knowledge_base, monkeypatch):
    from verifier import pipeline
    from verifier.reuse import reusable_verdicts

    first = judge(description_raw=knowledge_base["851762"], declared_code="851762")
    found = reusable_verdicts({first.judgement_key})
    # Reviewed between the chunk's lookup and its copy: the copy must not carry the officer's code.
    Verdict.objects.filter(pk=first.pk).update(reviewed=True, final_code="851769")
    monkeypatch.setattr(pipeline, "reusable_verdicts", lambda keys: found)
    repeat = make_item(description_raw=knowledge_base["851762"], declared_code="851762")
    items, claimed_at = pipeline.claim_items()

    assert pipeline.judge_items(items=items, claimed_at=claimed_at) == 0
    repeat.refresh_from_db()
    assert (repeat.status, repeat.attempts) == (DeclarationItem.Status.PENDING, 0)
    assert not Verdict.objects.filter(item=repeat).exists()

    monkeypatch.undo()
    assert process_pending() == 1
    assert Verdict.objects.get(item=repeat).final_code == "851762"
