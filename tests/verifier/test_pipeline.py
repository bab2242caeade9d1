from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from verifier.models import DeclarationBatch, DeclarationItem, Verdict
from verifier.normalization import normalize_description
from verifier.pipeline import claim_items, judge_items, process_pending, sweep_stuck_items

from .factories import make_batch, make_item

pytestmark = pytest.mark.django_db


def test_it_claims_each_pending_item_once():
    batch = make_batch()
    items = [make_item(batch=batch) for _ in range(5)]

    first, _ = claim_items(limit=3)
    second, _ = claim_items(limit=3)
    third, _ = claim_items(limit=3)

    assert [item.pk for item in first + second] == [item.pk for item in items]
    assert third == []
    assert set(DeclarationItem.objects.values_list("status", flat=True)) == {DeclarationItem.Status.PROCESSING}


def test_it_verifies_pending_items_with_one_verdict_each(knowledge_base):
    batch = make_batch(status=DeclarationBatch.Status.PROCESSING)
    agreeing = make_item(batch=batch, description_raw=knowledge_base["851762"], declared_code="85176200")
    disagreeing = make_item(batch=batch, description_raw=knowledge_base["610910"], declared_code="420221")

    assert process_pending() == 2

    agreeing.refresh_from_db()
    assert agreeing.status == DeclarationItem.Status.VERIFIED
    assert agreeing.description_normalized == normalize_description(knowledge_base["851762"])
    assert agreeing.description_raw == knowledge_base["851762"]
    assert agreeing.verdict.recommended_code == "851762"
    assert agreeing.verdict.tier == Verdict.Tier.AUTO_PASS
    assert agreeing.verdict.evidence["neighbours"][0]["code"] == "851762"
    warning = Verdict.objects.get(item=disagreeing)
    assert warning.tier == Verdict.Tier.WARNING
    assert [anomaly["code"] for anomaly in warning.anomalies] == ["declared_code_contradicted"]
    batch.refresh_from_db()
    assert batch.status == DeclarationBatch.Status.DONE


def test_it_is_safe_to_judge_the_same_items_twice(knowledge_base):
    item = make_item(description_raw=knowledge_base["090210"], declared_code="090210")
    process_pending()
    DeclarationItem.objects.filter(pk=item.pk).update(status=DeclarationItem.Status.PENDING)

    process_pending()

    assert Verdict.objects.filter(item=item).count() == 1
    assert Verdict.objects.get(item=item).tier == Verdict.Tier.AUTO_PASS


def test_a_rewritten_verdict_replaces_the_earlier_one_and_keeps_its_creation_time():
    from verifier.pipeline import upsert_verdicts

    item = make_item()
    upsert_verdicts([Verdict(item=item, recommended_code="8517", recommended_level=4, confidence=0.4, margin=0.1,
                             best_similarity=0.91, tier=Verdict.Tier.MANUAL_REVIEW, risk=1, anomalies=[],
                             evidence={"neighbours": []}, final_code="851762", reviewed=True)])
    first = Verdict.objects.get(item=item)

    evidence = {"neighbours": [{"code": "851762", "text": "无线蓝牙耳机 \"TWS\" \\ 5.0", "score": 0.97}]}
    upsert_verdicts([Verdict(item=item, recommended_code="", recommended_level=None, confidence=0, margin=0,
                             best_similarity=None, tier=Verdict.Tier.WARNING, risk=3.5,
                             anomalies=[{"code": "empty", "reason": "说明为空"}], evidence=evidence, final_code="",
                             reviewed=False)])

    verdict = Verdict.objects.get(item=item)
    assert (verdict.pk, verdict.created_at) == (first.pk, first.created_at)
    assert (verdict.recommended_code, verdict.recommended_level, verdict.best_similarity) == ("", None, None)
    assert (verdict.tier, verdict.risk, verdict.reviewed) == (Verdict.Tier.WARNING, 3.5, False)
    assert verdict.evidence == evidence and verdict.anomalies == [{"code": "empty", "reason": "说明为空"}]


def test_it_keeps_items_pending_when_the_embedding_endpoint_fails(knowledge_base, embedding_double):
    items = [make_item(description_raw=f"cotton t-shirt number {n}") for n in range(3)]
    embedding_double.fail_always("500")

    assert process_pending() == 0

    for item in items:
        item.refresh_from_db()
        assert (item.status, item.attempts, item.claimed_at) == (DeclarationItem.Status.PENDING, 1, None)
        assert "embedding" in item.last_error
    assert not Verdict.objects.exists()

    embedding_double.reset()
    assert process_pending() == 3


def test_it_gives_a_meaningless_description_a_warning_without_embedding_it(knowledge_base, embedding_double):
    item = make_item(description_raw="  N/A ", declared_code="851762")
    make_item(description_raw=knowledge_base["851762"])  # so the chunk does call the endpoint
    embedding_double.reset()

    process_pending()

    verdict = Verdict.objects.get(item=item)
    assert verdict.tier == Verdict.Tier.WARNING
    assert verdict.anomalies[0]["code"] == "meaningless_description"
    assert "placeholder" in verdict.anomalies[0]["reason"]
    sent = [text for request in embedding_double.requests for text in request.inputs]
    assert not any("n/a" in text.lower() for text in sent)


def test_it_flags_a_declared_code_missing_from_the_nomenclature(knowledge_base):
    item = make_item(description_raw=knowledge_base["851762"], declared_code="999999")

    process_pending()

    verdict = Verdict.objects.get(item=item)
    assert verdict.tier == Verdict.Tier.WARNING
    assert "unknown_declared_code" in [anomaly["code"] for anomaly in verdict.anomalies]


def test_it_flags_a_description_unlike_anything_known(knowledge_base):
    item = make_item(description_raw="hand-knotted silk carpet from an unknown workshop", declared_code="851762")

    process_pending()

    verdict = Verdict.objects.get(item=item)
    assert verdict.tier == Verdict.Tier.MANUAL_REVIEW
    assert "novel_description" in [anomaly["code"] for anomaly in verdict.anomalies]


def test_it_fills_only_missing_codes_in_fill_mode(knowledge_base):
    batch = make_batch(mode=DeclarationBatch.Mode.FILL)
    missing = make_item(batch=batch, description_raw=knowledge_base["420221"], declared_code="")
    declared = make_item(batch=batch, description_raw=knowledge_base["420221"], declared_code="610910")

    process_pending()

    assert Verdict.objects.get(item=missing).final_code == "420221"
    assert Verdict.objects.get(item=declared).final_code == "610910"


def test_it_suggests_a_code_for_every_item_in_suggest_mode(knowledge_base):
    batch = make_batch(mode=DeclarationBatch.Mode.SUGGEST)
    item = make_item(batch=batch, description_raw=knowledge_base["420221"], declared_code="610910")

    process_pending()

    verdict = Verdict.objects.get(item=item)
    assert (verdict.final_code, verdict.tier) == ("420221", Verdict.Tier.AUTO_PASS)


def test_it_writes_nothing_for_a_claim_the_sweeper_took_back(knowledge_base):
    item = make_item(description_raw=knowledge_base["090210"])
    items, claimed_at = claim_items()
    DeclarationItem.objects.filter(pk=item.pk).update(claimed_at=claimed_at - timedelta(hours=1))
    assert sweep_stuck_items(older_than_seconds=60) == 1

    assert judge_items(items=items, claimed_at=claimed_at) == 0

    item.refresh_from_db()
    assert item.status == DeclarationItem.Status.PENDING
    assert not Verdict.objects.filter(item=item).exists()


def test_the_sweeper_leaves_recent_claims_alone():
    make_item()
    claim_items()
    DeclarationItem.objects.update(claimed_at=timezone.now() - timedelta(seconds=30))

    assert sweep_stuck_items(older_than_seconds=60) == 0
    assert DeclarationItem.objects.get().status == DeclarationItem.Status.PROCESSING


def test_it_searches_a_wording_repeated_within_a_chunk_once(knowledge_base, monkeypatch):
    from verifier import recommendation

    searched: list[list[str]] = []
    real_find_evidence = recommendation.find_evidence

    def recording_find_evidence(descriptions, **options):
        searched.append(list(descriptions))
        return real_find_evidence(descriptions, **options)

    monkeypatch.setattr(recommendation, "find_evidence", recording_find_evidence)
    items = [make_item(description_raw="Cotton T-shirts, knitted", declared_code="610910") for _ in range(3)]

    process_pending()

    assert len(searched) == 1 and len(searched[0]) == 1
    assert Verdict.objects.filter(item__in=items).count() == 3


def test_an_open_circuit_costs_no_attempt(knowledge_base, settings):
    from embeddings.client import CircuitBreaker, get_client

    item = make_item(description_raw=knowledge_base["090210"])
    breaker = CircuitBreaker(threshold=1, cooldown=60.0)
    breaker.record_failure()
    get_client().breaker = breaker

    process_pending()

    item.refresh_from_db()
    assert (item.status, item.attempts) == (DeclarationItem.Status.PENDING, 0)
    assert "not calling it" in item.last_error


def test_failed_items_can_be_verified_again(knowledge_base):
    from verifier.services import requeue_failed_items

    batch = make_batch(status=DeclarationBatch.Status.DONE)
    item = make_item(batch=batch, description_raw=knowledge_base["090210"], declared_code="090210",
                     status=DeclarationItem.Status.FAILED, attempts=8, last_error="endpoint down")

    assert requeue_failed_items(item_ids=[item.pk]) == 1
    process_pending()

    item.refresh_from_db()
    batch.refresh_from_db()
    assert item.status == DeclarationItem.Status.VERIFIED and batch.status == DeclarationBatch.Status.DONE


def test_requeueing_reads_ids_given_as_a_generator_for_the_items_and_their_batch():
    from verifier.services import requeue_failed_items

    batch = make_batch(status=DeclarationBatch.Status.DONE)
    item = make_item(batch=batch, status=DeclarationItem.Status.FAILED, attempts=8, last_error="endpoint down")

    assert requeue_failed_items(item_ids=(item_id for item_id in [item.pk])) == 1

    batch.refresh_from_db()
    assert batch.status == DeclarationBatch.Status.PROCESSING  # its item is pending again, so it is not done


# --- failure paths: work always ends (issue 13) ----------------------------------------------


def poison_description(monkeypatch, poison: str) -> None:
    """Judging an item with this description raises (a bug in one item's data), every time."""
    from verifier import recommendation

    real_recommend = recommendation.recommend_hs_code
    poisoned_evidence: set[int] = set()
    real_find_evidence = recommendation.find_evidence

    def find_evidence(descriptions, **options):
        found = real_find_evidence(descriptions, **options)
        poisoned_evidence.update(id(evidence) for text, evidence in zip(descriptions, found)
                                 if text == normalize_description(poison))
        return found

    def recommend(evidence, **options):
        if id(evidence) in poisoned_evidence:
            raise ValueError("cannot vote on this item")
        return real_recommend(evidence, **options)

    monkeypatch.setattr(recommendation, "find_evidence", find_evidence)
    monkeypatch.setattr(recommendation, "recommend_hs_code", recommend)


def test_an_item_that_raises_never_holds_back_its_chunk_and_fails_after_max_attempts(knowledge_base, monkeypatch):
    from verifier.pipeline import MAX_ATTEMPTS

    batch = make_batch(status=DeclarationBatch.Status.PROCESSING)
    good = [make_item(batch=batch, description_raw=knowledge_base[code], declared_code=code)
            for code in ("851762", "610910", "090210", "420221") * 3]
    bad = make_item(batch=batch, description_raw="poisoned cotton socks", declared_code="610910")
    poison_description(monkeypatch, "poisoned cotton socks")

    # The chunk is split around the bad item and the rest verified; the bad one is retried alone until
    # its attempts are spent (a deterministic failure spends them at once: the run still ends).
    assert process_pending() == len(good)

    bad.refresh_from_db()
    batch.refresh_from_db()
    assert Verdict.objects.filter(item__in=good, writes=1).count() == len(good)
    assert (bad.status, bad.attempts) == (DeclarationItem.Status.FAILED, MAX_ATTEMPTS)
    assert bad.last_error == "ValueError: cannot vote on this item"
    assert not Verdict.objects.filter(item=bad).exists()
    assert batch.status == DeclarationBatch.Status.DONE  # the batch ends, with its failed item visible


def test_the_sweeper_counts_attempts_and_fails_an_item_whose_worker_dies_every_time():
    from verifier.pipeline import MAX_ATTEMPTS, WORKER_LOST_ERROR

    batch = make_batch(status=DeclarationBatch.Status.PROCESSING)
    item = make_item(batch=batch)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        assert [claimed.pk for claimed in claim_items()[0]] == [item.pk]  # a worker takes it, then is killed
        DeclarationItem.objects.update(claimed_at=timezone.now() - timedelta(hours=1))
        assert sweep_stuck_items(older_than_seconds=60) == 1
        item.refresh_from_db()
        assert item.attempts == attempt

    batch.refresh_from_db()
    assert (item.status, item.last_error) == (DeclarationItem.Status.FAILED, WORKER_LOST_ERROR)
    assert claim_items()[0] == []
    assert batch.status == DeclarationBatch.Status.DONE


def test_an_item_that_kills_its_worker_ends_up_alone_and_its_neighbours_are_verified(knowledge_base):
    """The culprit cannot be caught in Python (the process dies): retried chunks shrink until it is alone."""
    from verifier.pipeline import MAX_ATTEMPTS

    batch = make_batch(status=DeclarationBatch.Status.PROCESSING)
    items = [make_item(batch=batch, description_raw=knowledge_base["090210"], declared_code="090210")
             for _ in range(40)]
    killer = items[17]
    for _ in range(200):
        claimed, claimed_at = claim_items(limit=32)
        if not claimed:
            break
        if killer.pk in [item.pk for item in claimed]:  # the worker dies: nothing is written, the sweeper runs
            DeclarationItem.objects.filter(claimed_at=claimed_at).update(claimed_at=claimed_at - timedelta(hours=1))
            sweep_stuck_items(older_than_seconds=60)
        else:
            judge_items(items=claimed, claimed_at=claimed_at)

    statuses = dict(DeclarationItem.objects.values_list("id", "status"))
    assert statuses.pop(killer.pk) == DeclarationItem.Status.FAILED
    assert set(statuses.values()) == {DeclarationItem.Status.VERIFIED}
    assert max(DeclarationItem.objects.exclude(pk=killer.pk).values_list("attempts", flat=True)) < MAX_ATTEMPTS


def test_a_redelivered_task_takes_back_the_items_its_first_delivery_claimed(knowledge_base):
    batch = make_batch(status=DeclarationBatch.Status.PROCESSING)
    items = [make_item(batch=batch, description_raw=knowledge_base["090210"], declared_code="090210")
             for _ in range(3)]
    claim_items(claimant="task-7")  # the first delivery claimed them, and its worker was killed

    assert process_pending(claimant="task-8") == 0  # another task leaves a live claim alone
    assert process_pending(claimant="task-7") == 3  # the same message, delivered again: no sweeper needed

    assert set(DeclarationItem.objects.values_list("status", "attempts", "claimed_by")) == {
        (DeclarationItem.Status.VERIFIED, 1, "")}
    assert Verdict.objects.filter(item__in=items, writes=1).count() == 3


def test_a_verdict_counts_its_writes(knowledge_base):
    from verifier.pipeline import upsert_verdicts

    item = make_item(description_raw=knowledge_base["090210"], declared_code="090210")
    process_pending()
    assert Verdict.objects.get(item=item).writes == 1

    upsert_verdicts([Verdict.objects.get(item=item)])  # what judging the item again would do

    assert Verdict.objects.get(item=item).writes == 2
