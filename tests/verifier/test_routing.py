from __future__ import annotations

import pytest

from verifier.models import DeclarationBatch, Verdict
from verifier.routing import CalibrationSample, Thresholds, calibrate, codes_agree, route

THRESHOLDS = Thresholds(auto_pass_min_confidence=0.6, review_margin=0.15, novelty_max_similarity=0.82)


def judged(**overrides):
    values = dict(mode=DeclarationBatch.Mode.CHECK, declared_code="851762", declared_code_known=True,
                  recommended_code="851762", confidence=0.9, margin=0.6, best_similarity=0.93, thresholds=THRESHOLDS)
    values.update(overrides)
    return route(**values)


def anomaly_codes(decision) -> list[str]:
    return [anomaly["code"] for anomaly in decision.anomalies]


def test_it_auto_passes_a_declared_code_that_agrees_with_a_confident_recommendation():
    decision = judged(declared_code="85176200", recommended_code="8517")

    assert decision.tier == Verdict.Tier.AUTO_PASS and decision.anomalies == []


def test_it_warns_when_the_declared_code_disagrees_with_a_confident_recommendation():
    decision = judged(declared_code="610910")

    assert decision.tier == Verdict.Tier.WARNING
    assert anomaly_codes(decision) == ["declared_code_disagrees"]
    assert "declared 610910" in decision.anomalies[0]["reason"]


def test_it_sends_close_alternatives_to_review_even_when_confident():
    decision = judged(margin=0.05)

    assert decision.tier == Verdict.Tier.MANUAL_REVIEW
    assert anomaly_codes(decision) == ["close_alternatives"]


def test_it_sends_a_novel_description_to_review():
    decision = judged(best_similarity=0.79)

    assert decision.tier == Verdict.Tier.MANUAL_REVIEW
    assert anomaly_codes(decision) == ["novel_description"]


def test_it_warns_about_a_declared_code_outside_the_nomenclature():
    decision = judged(declared_code="999999", declared_code_known=False)

    assert decision.tier == Verdict.Tier.WARNING
    assert "unknown_declared_code" in anomaly_codes(decision)


def test_a_warning_is_riskier_than_a_review_which_is_riskier_than_an_auto_pass():
    assert judged(declared_code="610910").risk > judged(confidence=0.4).risk > judged().risk


@pytest.mark.parametrize(("mode", "declared", "final"), [
    (DeclarationBatch.Mode.FILL, "", "420221"),
    (DeclarationBatch.Mode.FILL, "610910", "610910"),
    (DeclarationBatch.Mode.SUGGEST, "610910", "420221"),
])
def test_each_mode_settles_on_its_code(mode, declared, final):
    decision = judged(mode=mode, declared_code=declared, recommended_code="420221")

    assert decision.final_code == final and decision.tier == Verdict.Tier.AUTO_PASS


def test_codes_agree_at_the_shorter_codes_length():
    assert codes_agree("85176200", "8517") and codes_agree("8517", "851762")
    assert not codes_agree("851762", "851769") and not codes_agree("", "8517")


def test_calibration_picks_the_lowest_confidence_that_keeps_the_target_precision():
    samples = [CalibrationSample(confidence=c / 100, margin=0.5, best_similarity=0.9, recommendation_correct=c >= 50)
               for c in range(100)]

    calibration = calibrate(samples, target_precision=0.98, novelty_max_similarity=0.8)

    assert calibration.thresholds.auto_pass_min_confidence == 0.49  # 50 right + 1 wrong: 50/51 = 0.980
    assert calibration.auto_passed == 51 and calibration.precision >= 0.98


def test_calibration_closes_auto_pass_when_no_threshold_is_precise_enough():
    samples = [CalibrationSample(confidence=0.9, margin=0.5, best_similarity=0.9, recommendation_correct=n % 2 == 0)
               for n in range(40)]

    calibration = calibrate(samples, target_precision=0.98, novelty_max_similarity=0.8)

    assert calibration.auto_passed == 0 and calibration.thresholds.auto_pass_min_confidence > 1


def test_calibration_refuses_too_few_samples():
    with pytest.raises(ValueError, match="at least 30"):
        calibrate([], target_precision=0.98, novelty_max_similarity=0.8)
