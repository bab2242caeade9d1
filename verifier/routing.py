"""Routing: from a recommendation and what was declared to a tier, anomalies with reasons, and a risk score.

Pure functions over plain values (no database), so each rule is easy to test; the
thresholds come from RoutingThreshold rows of the active embedding space, else
from the model profile's defaults.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from embeddings.models import EmbeddingSpace
from embeddings.profiles import default_thresholds_for

from .models import DeclarationBatch, RoutingThreshold, Verdict
from .recommendation import LevelSupport

# Used when neither a RoutingThreshold row nor the model profile says otherwise.
FALLBACK_AUTO_PASS_MIN_CONFIDENCE = 0.6
FALLBACK_REVIEW_MARGIN = 0.15
FALLBACK_NOVELTY_MAX_SIMILARITY = 0.5
FALLBACK_AUTO_PASS_MIN_SIMILARITY = 0.0
# Check mode (see `contradiction_of` and `route`), used when neither a RoutingThreshold row nor the model
# profile says otherwise; the e5 profile's values are measured (README, "Check mode").
FALLBACK_CHECK_MIN_DECLARED_SHARE = 0.1
FALLBACK_CHECK_MIN_SIMILARITY = 0.84
FALLBACK_CHECK_MAX_HEADING_GAP = 0.002  # rounding: the index and the exact scan may differ in the 3rd decimal
FALLBACK_CONTRADICTION_CHAPTER_GAP = 0.035
FALLBACK_CONTRADICTION_HEADING_GAP = 0.045
# A contradiction at least this share of the warning strength is named to the reviewer (the tier stays review).
CONTRADICTION_NOTICE = 0.5


@dataclass(frozen=True)
class Thresholds:
    auto_pass_min_confidence: float
    review_margin: float
    novelty_max_similarity: float
    # Auto-pass also needs a nearest line at least this similar: with e5 the vote's share alone
    # over-trusts descriptions whose best evidence is mediocre (calibrated per space on labelled data).
    auto_pass_min_similarity: float = FALLBACK_AUTO_PASS_MIN_SIMILARITY
    # Check mode. Auto-pass needs the declared heading to hold at least this share of the heading vote and
    # its closest line to be at most this much less similar than the closest line of all.
    check_min_declared_share: float = FALLBACK_CHECK_MIN_DECLARED_SHARE
    check_min_similarity: float = FALLBACK_CHECK_MIN_SIMILARITY  # the closest evidence at least this similar
    check_max_heading_gap: float = FALLBACK_CHECK_MAX_HEADING_GAP
    # A warning where the declared chapter's (heading's) closest line is this much less similar than the
    # closest line of all: the evidence contradicts the declared code.
    contradiction_chapter_gap: float = FALLBACK_CONTRADICTION_CHAPTER_GAP
    contradiction_heading_gap: float = FALLBACK_CONTRADICTION_HEADING_GAP


@dataclass(frozen=True)
class ThresholdSet:
    """The thresholds of one space: a default and, optionally, one per HS chapter."""

    default: Thresholds
    by_chapter: dict[str, Thresholds]

    def for_chapter(self, chapter: str) -> Thresholds:
        return self.by_chapter.get(chapter, self.default)


def default_thresholds(space: EmbeddingSpace | None) -> Thresholds:
    """The defaults registered for the space's model family (verifier.embedding_registration; e5 cosines are
    compressed: its novelty threshold is far above Qwen3's)."""
    defaults: dict[str, float] = {}
    if space is not None:
        try:
            defaults = default_thresholds_for(space.model_name)
        except ValueError:
            defaults = {}
    return Thresholds(
        auto_pass_min_confidence=defaults.get("hs_auto_pass", FALLBACK_AUTO_PASS_MIN_CONFIDENCE),
        review_margin=defaults.get("hs_review_margin", FALLBACK_REVIEW_MARGIN),
        novelty_max_similarity=defaults.get("hs_novelty", FALLBACK_NOVELTY_MAX_SIMILARITY),
        auto_pass_min_similarity=defaults.get("hs_min_similarity", FALLBACK_AUTO_PASS_MIN_SIMILARITY),
        check_min_declared_share=defaults.get("hs_check_min_declared_share", FALLBACK_CHECK_MIN_DECLARED_SHARE),
        check_min_similarity=defaults.get("hs_check_min_similarity", FALLBACK_CHECK_MIN_SIMILARITY),
        check_max_heading_gap=defaults.get("hs_check_max_heading_gap", FALLBACK_CHECK_MAX_HEADING_GAP),
        contradiction_chapter_gap=defaults.get("hs_contradiction_chapter_gap", FALLBACK_CONTRADICTION_CHAPTER_GAP),
        contradiction_heading_gap=defaults.get("hs_contradiction_heading_gap", FALLBACK_CONTRADICTION_HEADING_GAP),
    )


def load_thresholds(space: EmbeddingSpace | None) -> ThresholdSet:
    default = default_thresholds(space)
    by_chapter: dict[str, Thresholds] = {}
    if space is not None:
        for row in RoutingThreshold.objects.filter(space=space):
            # A stored row has no similarity floor of its own: the profile's applies. Check-mode values
            # left empty (never calibrated) are the profile's too.
            thresholds = replace(
                default, auto_pass_min_confidence=row.auto_pass_min_confidence, review_margin=row.review_margin,
                novelty_max_similarity=row.novelty_max_similarity,
                **{name: getattr(row, name) for name in CHECK_THRESHOLD_FIELDS if getattr(row, name) is not None},
            )
            if row.chapter:
                by_chapter[row.chapter] = thresholds
            else:
                default = thresholds
    return ThresholdSet(default=default, by_chapter=by_chapter)


CHECK_THRESHOLD_FIELDS = ("check_min_declared_share", "check_min_similarity", "check_max_heading_gap",
                          "contradiction_chapter_gap", "contradiction_heading_gap")


@dataclass(frozen=True)
class RoutingDecision:
    tier: str
    anomalies: list[dict]
    risk: float
    final_code: str
    # Check mode: the code the evidence confirmed, when deeper than the recommendation's own stopping level.
    confirmed_code: str = ""


@dataclass(frozen=True)
class Contradiction:
    """How strongly the evidence speaks against a declared code, from its own closest lines."""

    level: int  # where it is strongest: 2 (chapter) or 4 (heading)
    declared: str
    gap: float  # how much less similar the declared code's closest line is than the closest line of all
    strength: float  # gap over the warning threshold of its level: >= 1 is a warning

    def describe(self, support: LevelSupport | None) -> str:
        name = "chapter" if self.level == 2 else "heading"
        if self.gap >= 1.0:
            text = f"the knowledge base has no line under the declared {name} {self.declared}"
        else:
            text = (f"the closest line under the declared {name} {self.declared} is {self.gap:.3f} less similar "
                    f"than the closest evidence of all")
        if support is not None and not support.declared_is_best:
            text += (f"; {self.declared} holds {support.declared_share:.0%} of the {name} vote against "
                     f"{support.best_share:.0%} for {support.best}")
        return text


def contradiction_of(support: tuple[LevelSupport, ...], thresholds: Thresholds) -> Contradiction | None:
    """The strongest contradiction of the declared code at the chapter or heading level, if its lines were searched."""
    limits = {2: thresholds.contradiction_chapter_gap, 4: thresholds.contradiction_heading_gap}
    found = [
        Contradiction(level=level.level, declared=level.declared, gap=level.similarity_gap,
                      strength=level.similarity_gap / limits[level.level] if limits[level.level] > 0 else 0.0)
        for level in support if level.level in limits and level.similarity_gap is not None
    ]
    return max(found, key=lambda contradiction: contradiction.strength, default=None)


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
    path: tuple[str, ...] = (),
    declared_support: tuple[LevelSupport, ...] = (),
) -> RoutingDecision:
    """Tier, anomalies and risk of one judged item.

    1. Collect anomalies: novelty, unknown declared code, small top-2 margin.
    2. A recommendation is confident when its confidence and margin clear the thresholds and the
       description is not novel.
    3. By mode: `check` weighs the declared code's own evidence (route_check); `fill` keeps a declared
       code and fills a missing one; `suggest` judges the recommendation alone.
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
    weak = not novel and best_similarity < thresholds.auto_pass_min_similarity
    uncertainty = 1.0 - max(0.0, min(1.0, confidence))

    if mode == DeclarationBatch.Mode.CHECK:
        return route_check(
            declared_code=declared_code, declared_code_known=declared_code_known, novel=novel,
            weak=not novel and best_similarity < thresholds.check_min_similarity,
            best_similarity=best_similarity, path=path, declared_support=declared_support, thresholds=thresholds,
            anomalies=anomalies, uncertainty=uncertainty,
        )

    close = bool(recommended_code) and margin < thresholds.review_margin
    if close:
        anomalies.append(anomaly(
            "close_alternatives",
            f"the best and second-best codes are close (margin {margin:.2f} < {thresholds.review_margin:.2f})",
        ))
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

    if mode == DeclarationBatch.Mode.FILL and declared_code:
        if not declared_code_known:
            return RoutingDecision(Verdict.Tier.WARNING, anomalies, 2.0 + uncertainty, declared_code)
        # Fill mode trusts a declared code from the nomenclature: only missing codes are judged.
        return RoutingDecision(Verdict.Tier.AUTO_PASS, anomalies, uncertainty / 2, declared_code)

    # fill (code missing) and suggest: the recommendation is the answer.
    if confident:
        return RoutingDecision(Verdict.Tier.AUTO_PASS, anomalies, uncertainty / 2, recommended_code)
    return RoutingDecision(Verdict.Tier.MANUAL_REVIEW, anomalies, 1.0 + uncertainty, recommended_code)


def route_check(
    *, declared_code: str, declared_code_known: bool, novel: bool, weak: bool, best_similarity: float | None,
    path: tuple[str, ...], declared_support: tuple[LevelSupport, ...], thresholds: Thresholds,
    anomalies: list[dict], uncertainty: float,
) -> RoutingDecision:
    """Check mode: is the declared code what the evidence says?

    1. A missing or unknown code cannot be checked: review, or a warning for a code outside the nomenclature.
    2. Contradiction: the declared chapter's or heading's own closest line is much less similar than the
       closest line of all. Past the level's threshold it is a warning, whatever the recommendation's
       confidence; from half of it the reviewer is told (the tier stays review).
    3. Auto-pass only where the vote chooses the declared heading (so never on a chapter alone), the
       declared heading holds a clear share of the heading vote, its closest line is the closest of all
       (within the threshold), the evidence is close enough, and nothing above objects.
    4. Anything else goes to review. Risk: warnings above reviews above auto-passes, and within each
       tier the strongest contradiction first.
    """
    if not declared_code:
        anomalies.append(anomaly("missing_declared_code", "no HS code was declared"))
        return RoutingDecision(Verdict.Tier.MANUAL_REVIEW, anomalies, 1.0 + uncertainty, "")
    if not declared_code_known:
        return RoutingDecision(Verdict.Tier.WARNING, anomalies, 2.0 + uncertainty, declared_code)
    support = {level.level: level for level in declared_support}
    contradiction = contradiction_of(declared_support, thresholds)
    strength = min(contradiction.strength, 1.0) if contradiction is not None else 0.0
    if contradiction is not None and contradiction.strength >= CONTRADICTION_NOTICE:
        anomalies.append(anomaly("declared_code_contradicted",
                                 contradiction.describe(support.get(contradiction.level))))
        if contradiction.strength >= 1.0:
            return RoutingDecision(Verdict.Tier.WARNING, anomalies, 2.0 + strength, declared_code)

    heading = support.get(4)
    chosen_heading = path[1] if len(path) > 1 else ""
    reasons = []
    if heading is None:
        reasons.append(f"the declared code {declared_code} names no heading to check")
    else:
        if chosen_heading != heading.declared:
            reasons.append(f"the vote chooses heading {chosen_heading or 'none'}, not the declared {heading.declared}")
        elif heading.declared_share < thresholds.check_min_declared_share:
            reasons.append(f"the declared heading holds only {heading.declared_share:.0%} of the heading vote "
                           f"(auto-pass needs {thresholds.check_min_declared_share:.0%})")
        if heading.similarity_gap is None:
            reasons.append("the declared heading's own lines were not searched")
        elif heading.similarity_gap > thresholds.check_max_heading_gap and heading.similarity_gap < 1.0:
            reasons.append(f"a line outside the declared heading is closer (by {heading.similarity_gap:.3f})")
    if weak:
        reasons.append(f"the closest evidence is only somewhat similar (best similarity {best_similarity:.3f} < "
                       f"{thresholds.check_min_similarity:.3f} needed to auto-pass)")
    if not reasons and not novel and not anomalies:
        confirmed = max((code for code in path if declared_code.startswith(code)), key=len, default="")
        return RoutingDecision(Verdict.Tier.AUTO_PASS, anomalies, (1.0 - heading.declared_share) / 2, declared_code,
                               confirmed_code=confirmed)
    if reasons and not any(item["code"] == "declared_code_contradicted" for item in anomalies):
        anomalies.append(anomaly("declared_code_unconfirmed", "; ".join(reasons)))
    return RoutingDecision(Verdict.Tier.MANUAL_REVIEW, anomalies, 1.0 + max(strength, uncertainty / 2), declared_code)
