"""Routing: from a recommendation and what was declared to a tier, anomalies with reasons, and a risk score.

Pure functions over plain values (no database), so each rule is easy to test; the
thresholds come from RoutingThreshold rows of the active embedding space, else
from the model profile's defaults.
"""
from __future__ import annotations

from dataclasses import dataclass

from embeddings.models import EmbeddingSpace
from embeddings.profiles import profile_for

from .models import DeclarationBatch, RoutingThreshold, Verdict

# Used when neither a RoutingThreshold row nor the model profile says otherwise.
FALLBACK_AUTO_PASS_MIN_CONFIDENCE = 0.6
FALLBACK_REVIEW_MARGIN = 0.15
FALLBACK_NOVELTY_MAX_SIMILARITY = 0.5
FALLBACK_AUTO_PASS_MIN_SIMILARITY = 0.0


@dataclass(frozen=True)
class Thresholds:
    auto_pass_min_confidence: float
    review_margin: float
    novelty_max_similarity: float
    # Auto-pass also needs a nearest line at least this similar: with e5 the vote's share alone
    # over-trusts descriptions whose best evidence is mediocre (calibrated per space on labelled data).
    auto_pass_min_similarity: float = FALLBACK_AUTO_PASS_MIN_SIMILARITY


@dataclass(frozen=True)
class ThresholdSet:
    """The thresholds of one space: a default and, optionally, one per HS chapter."""

    default: Thresholds
    by_chapter: dict[str, Thresholds]

    def for_chapter(self, chapter: str) -> Thresholds:
        return self.by_chapter.get(chapter, self.default)


def default_thresholds(space: EmbeddingSpace | None) -> Thresholds:
    """The model profile's defaults (e5 cosines are compressed: its novelty threshold is far above Qwen3's)."""
    defaults: dict[str, float] = {}
    if space is not None:
        try:
            defaults = profile_for(space.model_name).default_thresholds
        except ValueError:
            defaults = {}
    return Thresholds(
        auto_pass_min_confidence=defaults.get("hs_auto_pass", FALLBACK_AUTO_PASS_MIN_CONFIDENCE),
        review_margin=defaults.get("hs_review_margin", FALLBACK_REVIEW_MARGIN),
        novelty_max_similarity=defaults.get("hs_novelty", FALLBACK_NOVELTY_MAX_SIMILARITY),
        auto_pass_min_similarity=defaults.get("hs_min_similarity", FALLBACK_AUTO_PASS_MIN_SIMILARITY),
    )


def load_thresholds(space: EmbeddingSpace | None) -> ThresholdSet:
    default = default_thresholds(space)
    by_chapter: dict[str, Thresholds] = {}
    if space is not None:
        for row in RoutingThreshold.objects.filter(space=space):
            # A stored row has no similarity floor of its own: the profile's applies.
            thresholds = Thresholds(row.auto_pass_min_confidence, row.review_margin, row.novelty_max_similarity,
                                    default.auto_pass_min_similarity)
            if row.chapter:
                by_chapter[row.chapter] = thresholds
            else:
                default = thresholds
    return ThresholdSet(default=default, by_chapter=by_chapter)


@dataclass(frozen=True)
class RoutingDecision:
    tier: str
    anomalies: list[dict]
    risk: float
    final_code: str


def codes_agree(declared_code: str, recommended_code: str) -> bool:
    """The declared code falls under the recommendation (or is the coarser code the recommendation falls under)."""
    return bool(declared_code and recommended_code) and (
        declared_code.startswith(recommended_code) or recommended_code.startswith(declared_code)
    )


def anomaly(code: str, reason: str) -> dict:
    return {"code": code, "reason": reason}


def route_meaningless(*, reason: str, declared_code: str) -> RoutingDecision:
    """An empty or meaningless description: nothing to compare, so a warning that says why (no embedding)."""
    return RoutingDecision(
        tier=Verdict.Tier.WARNING,
        anomalies=[anomaly("meaningless_description", reason)],
        risk=3.0,
        final_code=declared_code,
    )


def route(
    *,
    mode: str,
    declared_code: str,
    declared_code_known: bool,
    recommended_code: str,
    confidence: float,
    margin: float,
    best_similarity: float | None,
    thresholds: Thresholds,
) -> RoutingDecision:
    """Tier, anomalies and risk of one judged item.

    1. Collect anomalies: novelty, unknown declared code, small top-2 margin.
    2. A recommendation is confident when its confidence and margin clear the thresholds and the
       description is not novel.
    3. By mode: `check` compares the declared code with a confident recommendation; `fill` keeps a
       declared code and fills a missing one; `suggest` judges the recommendation alone.
    """
    anomalies: list[dict] = []
    novel = best_similarity is None or best_similarity < thresholds.novelty_max_similarity
    if novel:
        similarity = "no evidence at all" if best_similarity is None else f"best similarity {best_similarity:.3f}"
        anomalies.append(anomaly(
            "novel_description",
            f"the description is unlike anything known ({similarity} < {thresholds.novelty_max_similarity:.3f})",
        ))
    if declared_code and not declared_code_known:
        anomalies.append(anomaly("unknown_declared_code", f"declared code {declared_code} is not in the nomenclature"))
    close = bool(recommended_code) and margin < thresholds.review_margin
    if close:
        anomalies.append(anomaly(
            "close_alternatives",
            f"the best and second-best codes are close (margin {margin:.2f} < {thresholds.review_margin:.2f})",
        ))
    weak = not novel and best_similarity < thresholds.auto_pass_min_similarity
    # Said only where it is what keeps the recommendation from auto-passing.
    if recommended_code and weak and not close and confidence >= thresholds.auto_pass_min_confidence:
        anomalies.append(anomaly(
            "weak_evidence",
            f"the closest evidence is only somewhat similar (best similarity {best_similarity:.3f} < "
            f"{thresholds.auto_pass_min_similarity:.3f} needed to auto-pass)",
        ))
    confident = (
        bool(recommended_code) and not novel and not close and not weak
        and confidence >= thresholds.auto_pass_min_confidence
    )
    if recommended_code and not novel and not close and confidence < thresholds.auto_pass_min_confidence:
        anomalies.append(anomaly(
            "low_confidence",
            f"confidence {confidence:.2f} is below {thresholds.auto_pass_min_confidence:.2f}",
        ))

    uncertainty = 1.0 - max(0.0, min(1.0, confidence))
    if mode == DeclarationBatch.Mode.CHECK or (mode == DeclarationBatch.Mode.FILL and declared_code):
        if declared_code and not declared_code_known:
            return RoutingDecision(Verdict.Tier.WARNING, anomalies, 2.0 + uncertainty, declared_code)
        if mode == DeclarationBatch.Mode.FILL:
            # Fill mode trusts a declared code from the nomenclature: only missing codes are judged.
            return RoutingDecision(Verdict.Tier.AUTO_PASS, anomalies, uncertainty / 2, declared_code)
        if not declared_code:
            anomalies.append(anomaly("missing_declared_code", "no HS code was declared"))
            return RoutingDecision(Verdict.Tier.MANUAL_REVIEW, anomalies, 1.0 + uncertainty, "")
        if confident and codes_agree(declared_code, recommended_code):
            return RoutingDecision(Verdict.Tier.AUTO_PASS, anomalies, uncertainty / 2, declared_code)
        if confident:
            anomalies.append(anomaly(
                "declared_code_disagrees",
                f"declared {declared_code} but the evidence points to {recommended_code} "
                f"(confidence {confidence:.2f})",
            ))
            return RoutingDecision(Verdict.Tier.WARNING, anomalies, 2.0 + confidence, declared_code)
        return RoutingDecision(Verdict.Tier.MANUAL_REVIEW, anomalies, 1.0 + uncertainty, declared_code)

    # fill (code missing) and suggest: the recommendation is the answer.
    if confident:
        return RoutingDecision(Verdict.Tier.AUTO_PASS, anomalies, uncertainty / 2, recommended_code)
    return RoutingDecision(Verdict.Tier.MANUAL_REVIEW, anomalies, 1.0 + uncertainty, recommended_code)


# --- calibration: thresholds that keep auto-pass precise ---------------------------------------

# Margins tried by calibration; confidence thresholds are taken from the samples themselves.
CALIBRATION_MARGINS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4)
MIN_CALIBRATION_SAMPLES = 30


@dataclass(frozen=True)
class CalibrationSample:
    """One judged item whose right code is known (from a review or a label)."""

    confidence: float
    margin: float
    best_similarity: float | None
    recommendation_correct: bool


@dataclass(frozen=True)
class Calibration:
    thresholds: Thresholds
    samples: int
    auto_passed: int
    precision: float | None  # of the auto-passed samples, under the new thresholds

    def describe(self) -> str:
        precision = "n/a" if self.precision is None else f"{self.precision:.3f}"
        return (f"auto-pass >= {self.thresholds.auto_pass_min_confidence:.3f} confidence, margin >= "
                f"{self.thresholds.review_margin:.2f}: {self.auto_passed}/{self.samples} samples would auto-pass "
                f"at precision {precision}")


def calibrate(
    samples: list[CalibrationSample], *, target_precision: float, novelty_max_similarity: float,
    min_samples: int = MIN_CALIBRATION_SAMPLES,
) -> Calibration:
    """The (confidence, margin) thresholds that auto-pass the most samples while keeping the target precision.

    Novel samples (best similarity under the novelty threshold) never auto-pass, so they are left out.
    With no threshold reaching the target, auto-pass is closed (confidence threshold above 1).
    """
    usable = [s for s in samples if s.best_similarity is not None and s.best_similarity >= novelty_max_similarity]
    if len(usable) < min_samples:
        raise ValueError(f"{len(usable)} usable samples; calibration needs at least {min_samples}")
    best: Calibration | None = None
    for margin in CALIBRATION_MARGINS:
        eligible = sorted((s for s in usable if s.margin >= margin), key=lambda s: -s.confidence)
        correct = 0
        for rank, sample in enumerate(eligible, start=1):
            correct += sample.recommendation_correct
            # Only cut between distinct confidences: a threshold cannot split equal values.
            if rank < len(eligible) and eligible[rank].confidence == sample.confidence:
                continue
            if correct / rank >= target_precision and (best is None or rank > best.auto_passed):
                best = Calibration(Thresholds(sample.confidence, margin, novelty_max_similarity),
                                   len(usable), rank, correct / rank)
    if best is None:
        return Calibration(Thresholds(1.01, CALIBRATION_MARGINS[-1], novelty_max_similarity), len(usable), 0, None)
    return best
