"""Routing rules, each pinned with hand-worked evidence (no database)."""
from __future__ import annotations

import pytest

from verifier.models import DeclarationBatch, Verdict
from verifier.recommendation import Evidence, LevelSupport, recommend_hs_code
from verifier.routing import Thresholds, codes_agree, contradiction_of, route

THRESHOLDS = Thresholds(auto_pass_min_confidence=0.6, review_margin=0.15, novelty_max_similarity=0.82,
                        check_min_declared_share=0.2, check_min_similarity=0.85, check_max_heading_gap=0.002,
                        contradiction_chapter_gap=0.035, contradiction_heading_gap=0.045)


def support(level: int, declared: str, share: float, best: str, best_share: float, gap: float | None) -> LevelSupport:
    return LevelSupport(level=level, declared=declared, declared_share=share, best=best, best_share=best_share,
                        similarity_gap=gap)


def suggested(**overrides):
    values = dict(mode=DeclarationBatch.Mode.SUGGEST, declared_code="", declared_code_known=False,
                  recommended_code="851762", confidence=0.9, margin=0.6, best_similarity=0.93, thresholds=THRESHOLDS)
    values.update(overrides)
    return route(**values)


def checked(declared_code: str, *, path: tuple[str, ...], supports: tuple[LevelSupport, ...], **overrides):
    values = dict(mode=DeclarationBatch.Mode.CHECK, declared_code=declared_code, declared_code_known=True,
                  recommended_code=path[0], confidence=0.4, margin=0.1, best_similarity=0.93, thresholds=THRESHOLDS,
                  path=path, declared_support=supports)
    values.update(overrides)
    return route(**values)


def anomaly_codes(decision) -> list[str]:
    return [anomaly["code"] for anomaly in decision.anomalies]


# --- check mode ----------------------------------------------------------------------------------

SMARTPHONE_AS_8517 = (support(2, "85", 0.7, "85", 0.7, 0.0), support(4, "8517", 0.45, "8517", 0.45, 0.0))


def test_it_auto_passes_a_declared_heading_that_the_vote_chooses_and_whose_line_is_the_closest():
    decision = checked("85171300", path=("85", "8517"), supports=SMARTPHONE_AS_8517)

    assert decision.tier == Verdict.Tier.AUTO_PASS and decision.anomalies == []
    assert decision.final_code == "85171300"
    assert decision.confirmed_code == "8517"  # deeper than the chapter the vote alone stopped at


def test_a_chapter_only_agreement_never_auto_passes():
    # A power bank declared 8507 (accumulators): the vote stops at chapter 85 and chooses heading 8504.
    decision = checked("8507", path=("85", "8504"), supports=(
        support(2, "85", 0.8, "85", 0.8, 0.0), support(4, "8507", 0.15, "8504", 0.4, 0.02)))

    assert decision.tier == Verdict.Tier.MANUAL_REVIEW
    assert anomaly_codes(decision) == ["declared_code_unconfirmed"]
    assert "chooses heading 8504, not the declared 8507" in decision.anomalies[0]["reason"]


def test_it_does_not_auto_pass_when_the_declared_heading_holds_too_little_of_the_vote():
    decision = checked("8517", path=("85", "8517"), supports=(
        support(2, "85", 0.7, "85", 0.7, 0.0), support(4, "8517", 0.1, "8517", 0.1, 0.0)))

    assert decision.tier == Verdict.Tier.MANUAL_REVIEW
    assert "holds only 10% of the heading vote" in decision.anomalies[0]["reason"]


def test_it_does_not_auto_pass_on_weak_evidence():
    decision = checked("8517", path=("85", "8517"), supports=SMARTPHONE_AS_8517, best_similarity=0.84)

    assert decision.tier == Verdict.Tier.MANUAL_REVIEW
    assert "only somewhat similar" in decision.anomalies[0]["reason"]


def test_a_declared_chapter_far_from_the_evidence_is_a_warning_even_without_a_confident_recommendation():
    # A hair dryer declared as frozen tuna fillets (030487): chapter 03's closest line is 0.08 below the best.
    decision = checked("030487", path=("85", "8516"), confidence=0.2, margin=0.01, supports=(
        support(2, "03", 0.0, "85", 0.6, 0.08), support(4, "0304", 0.0, "8516", 0.3, 0.09),
        support(6, "030487", 0.0, "851631", 0.2, 0.1)))

    assert decision.tier == Verdict.Tier.WARNING
    assert anomaly_codes(decision) == ["declared_code_contradicted"]
    reason = decision.anomalies[0]["reason"]
    # The chapter's gap (0.08 of 0.035) is the stronger contradiction than the heading's (0.09 of 0.045).
    assert "declared chapter 03" in reason and "0.080 less similar" in reason
    assert "03 holds 0% of the chapter vote against 60% for 85" in reason


def test_a_near_miss_in_the_right_chapter_is_caught_at_the_heading():
    # Plastic building bricks (9503) declared as other toys' heading 9504: right chapter, wrong heading.
    decision = checked("9504", path=("95", "9503"), supports=(
        support(2, "95", 0.9, "95", 0.9, 0.0), support(4, "9504", 0.02, "9503", 0.7, 0.05)))

    assert decision.tier == Verdict.Tier.WARNING
    assert "declared heading 9504" in decision.anomalies[0]["reason"]


def test_a_milder_contradiction_is_named_to_the_reviewer_without_a_warning():
    decision = checked("9504", path=("95", "9503"), supports=(
        support(2, "95", 0.9, "95", 0.9, 0.0), support(4, "9504", 0.1, "9503", 0.6, 0.03)))

    assert decision.tier == Verdict.Tier.MANUAL_REVIEW
    assert anomaly_codes(decision) == ["declared_code_contradicted"]


def test_the_strongest_contradiction_is_the_riskiest_review_and_warnings_outrank_reviews():
    mild = checked("9504", path=("95", "9503"), supports=(support(4, "9504", 0.1, "9503", 0.6, 0.025),))
    milder = checked("9504", path=("95", "9503"), supports=(support(4, "9504", 0.1, "9503", 0.6, 0.001),))
    warned = checked("9504", path=("95", "9503"), supports=(support(4, "9504", 0.0, "9503", 0.6, 0.2),))
    passed = checked("85171300", path=("85", "8517"), supports=SMARTPHONE_AS_8517)

    assert warned.risk > mild.risk > milder.risk > passed.risk


def test_a_declared_chapter_without_any_line_in_the_knowledge_base_is_not_a_contradiction():
    # Frozen beef (0202) against a sample knowledge base without chapter 02: nothing to compare with.
    decision = checked("0202", path=("03", "0303"), supports=(
        support(2, "02", 0.0, "03", 0.8, None), support(4, "0202", 0.0, "0303", 0.5, None)))

    assert decision.tier == Verdict.Tier.MANUAL_REVIEW
    assert "declared_code_contradicted" not in anomaly_codes(decision)


def test_contradiction_strength_is_the_gap_over_its_levels_threshold():
    contradiction = contradiction_of(
        (support(2, "03", 0.0, "85", 0.6, 0.0175), support(4, "0304", 0.0, "8516", 0.3, 0.09)), THRESHOLDS)

    assert contradiction.level == 4 and contradiction.strength == pytest.approx(2.0)


def test_it_warns_about_a_declared_code_outside_the_nomenclature_and_reviews_a_missing_one():
    unknown = checked("999999", path=("85", "8517"), supports=SMARTPHONE_AS_8517, declared_code_known=False)
    missing = checked("", path=("85", "8517"), supports=())

    assert unknown.tier == Verdict.Tier.WARNING and "unknown_declared_code" in anomaly_codes(unknown)
    assert missing.tier == Verdict.Tier.MANUAL_REVIEW and anomaly_codes(missing) == ["missing_declared_code"]


def test_the_vote_reports_the_declared_codes_support_and_its_own_closest_lines():
    evidence = [
        Evidence(1, "851713", "nomenclature", "en", 0.95, "Smartphones"),
        Evidence(2, "851762", "nomenclature", "en", 0.93, "Machines for the reception of voice"),
        Evidence(3, "850760", "nomenclature", "en", 0.90, "Lithium-ion accumulators"),
        # The declared code's own closest lines, as find_evidence adds them in check mode.
        Evidence(1, "851713", "declared_2", "en", 0.95, "Smartphones"),
        Evidence(3, "850760", "declared_4", "en", 0.90, "Lithium-ion accumulators"),
        Evidence(3, "850760", "declared_6", "en", 0.90, "Lithium-ion accumulators"),
    ]
    recommendation = recommend_hs_code(evidence, declared_code="850760")

    chapter, heading, subheading = recommendation.declared_support
    assert (chapter.level, chapter.declared, chapter.similarity_gap) == (2, "85", 0.0)
    assert heading.declared == "8507" and heading.best == "8517" and not heading.declared_is_best
    assert heading.similarity_gap == pytest.approx(0.05) and heading.closest_line.text == "Lithium-ion accumulators"
    assert subheading.declared == "850760" and subheading.similarity_gap == pytest.approx(0.05)
    assert all(not item.source.startswith("declared_") for item in recommendation.evidence)  # they do not vote


def test_a_declared_code_whose_level_has_no_line_at_all_gets_the_widest_gap():
    evidence = [Evidence(1, "851713", "nomenclature", "en", 0.95, "Smartphones"),
                Evidence(1, "851713", "declared_2", "en", 0.95, "Smartphones")]

    heading = recommend_hs_code(evidence, declared_code="8599").support_at(4)

    assert heading.similarity_gap == 2.0 and heading.closest_line is None


# --- suggest and fill --------------------------------------------------------------------------------

def test_it_auto_passes_a_confident_suggestion():
    decision = suggested()

    assert decision.tier == Verdict.Tier.AUTO_PASS and decision.final_code == "851762"


def test_it_sends_close_alternatives_to_review_even_when_confident():
    decision = suggested(margin=0.05)

    assert decision.tier == Verdict.Tier.MANUAL_REVIEW
    assert anomaly_codes(decision) == ["close_alternatives"]


def test_it_sends_a_novel_description_to_review():
    decision = suggested(best_similarity=0.79)

    assert decision.tier == Verdict.Tier.MANUAL_REVIEW
    assert anomaly_codes(decision) == ["novel_description"]


@pytest.mark.parametrize(("mode", "declared", "final"), [
    (DeclarationBatch.Mode.FILL, "", "420221"),
    (DeclarationBatch.Mode.FILL, "610910", "610910"),
    (DeclarationBatch.Mode.SUGGEST, "610910", "420221"),
])
def test_each_mode_settles_on_its_code(mode, declared, final):
    decision = suggested(mode=mode, declared_code=declared, declared_code_known=bool(declared),
                         recommended_code="420221")

    assert decision.final_code == final and decision.tier == Verdict.Tier.AUTO_PASS


def test_codes_agree_at_the_shorter_codes_length():
    assert codes_agree("85176200", "8517") and codes_agree("8517", "851762")
    assert not codes_agree("851762", "851769") and not codes_agree("", "8517")
