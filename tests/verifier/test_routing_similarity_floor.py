"""Auto-pass needs a nearest line above the space's similarity floor (profile key hs_min_similarity)."""
from __future__ import annotations

import pytest

from embeddings.models import EmbeddingSpace
from verifier.models import DeclarationBatch, RoutingThreshold, Verdict
from verifier.routing import Thresholds, load_thresholds, route

FLOORED = Thresholds(auto_pass_min_confidence=0.5, review_margin=0.1, novelty_max_similarity=0.82,
                     auto_pass_min_similarity=0.90)


def suggested(**overrides):
    values = dict(mode=DeclarationBatch.Mode.SUGGEST, declared_code="", declared_code_known=False,
                  recommended_code="8517", confidence=0.9, margin=0.6, best_similarity=0.93, thresholds=FLOORED)
    values.update(overrides)
    return route(**values)


def test_it_auto_passes_a_confident_recommendation_above_the_floor():
    assert suggested().tier == Verdict.Tier.AUTO_PASS


def test_it_sends_a_confident_recommendation_below_the_floor_to_review_and_says_why():
    decision = suggested(best_similarity=0.88)

    assert decision.tier == Verdict.Tier.MANUAL_REVIEW
    assert [anomaly["code"] for anomaly in decision.anomalies] == ["weak_evidence"]
    assert "0.880 < 0.900" in decision.anomalies[0]["reason"]


def test_it_names_only_low_confidence_when_that_already_keeps_it_from_auto_passing():
    decision = suggested(best_similarity=0.88, confidence=0.3)

    assert [anomaly["code"] for anomaly in decision.anomalies] == ["low_confidence"]


def test_it_has_no_floor_unless_one_is_set():
    decision = route(mode=DeclarationBatch.Mode.SUGGEST, declared_code="", declared_code_known=False,
                     recommended_code="8517", confidence=0.9, margin=0.6, best_similarity=0.83,
                     thresholds=Thresholds(0.5, 0.1, 0.82))

    assert decision.tier == Verdict.Tier.AUTO_PASS


@pytest.mark.django_db
def test_it_takes_the_floor_from_the_e5_profile_and_keeps_it_under_a_calibrated_row():
    space = EmbeddingSpace.objects.create(model_name="intfloat/multilingual-e5-small", dimensions=384,
                                          prompt_version="e5-query-passage-v1")
    assert load_thresholds(space).default.auto_pass_min_similarity == 0.89

    RoutingThreshold.objects.create(space=space, chapter="", auto_pass_min_confidence=0.7, review_margin=0.1,
                                    novelty_max_similarity=0.8)
    thresholds = load_thresholds(space).default

    assert thresholds.auto_pass_min_confidence == 0.7 and thresholds.auto_pass_min_similarity == 0.89
