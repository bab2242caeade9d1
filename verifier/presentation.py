"""What a reviewer reads on an item page, built from a verdict's stored evidence (plain data, no HTTP).

The admin item page and the staff item page render the same `ItemScreen`: the declared code beside the
evidence's best code at each level, the alternatives with their nomenclature text, and the anomalies that
say why the declared code is in doubt first. Templates only lay these out (and escape them).
"""
from __future__ import annotations

from dataclasses import dataclass

from .models import DeclarationItem, Verdict
from .recommendation import PROTOTYPE_SOURCE
from .selectors import code_descriptions

LEVEL_NAMES = {2: "chapter", 4: "heading", 6: "subheading"}
# A similarity gap at or above this means no knowledge line lies under the declared code at all
# (verifier.recommendation stores 2.0 for it; verifier.routing reads anything >= 1 the same way).
NO_LINE_GAP = 1.0
# One colour per tier, used by the queue's list and both item pages, so a tier looks the same everywhere.
TIER_COLOURS = {
    Verdict.Tier.WARNING: "#b3261e",
    Verdict.Tier.MANUAL_REVIEW: "#a35a00",
    Verdict.Tier.AUTO_PASS: "#1e7b34",
}
# Anomalies about the declared code itself: shown first and prominently, with a heading in words.
DISAGREEMENT_TITLES = {
    "declared_code_contradicted": "The evidence contradicts the declared code",
    "declared_code_unconfirmed": "The evidence does not confirm the declared code",
    "unknown_declared_code": "The declared code is not in the nomenclature",
    "missing_declared_code": "No code was declared",
}
OTHER_TITLES = {
    "novel_description": "Unlike anything known",
    "close_alternatives": "Close alternatives",
    "low_confidence": "Low confidence",
    "weak_evidence": "Weak evidence",
    "meaningless_description": "Nothing to compare",
}


def percent(share: float | None) -> str:
    return "—" if share is None else f"{share:.0%}"


def two_decimals(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


@dataclass(frozen=True)
class ClosestLine:
    code: str
    text: str
    similarity: float
    entry_id: int | None

    @property
    def similarity_text(self) -> str:
        return two_decimals(self.similarity)


@dataclass(frozen=True)
class LevelRow:
    """One level of the comparison: the declared code cut to it against the evidence's best code there."""

    level: int  # 2, 4 or 6 digits
    declared: str  # "" where the declared code does not reach this level
    declared_share: float | None  # None where the vote's kept candidates do not say
    closest_line: ClosestLine | None  # the closest knowledge line under the declared code
    similarity_gap: float | None  # how much less similar that line is than the closest line of all
    best: str  # the evidence's best code at this level
    best_share: float | None

    @property
    def name(self) -> str:
        return LEVEL_NAMES[self.level]

    @property
    def declared_share_text(self) -> str:
        return percent(self.declared_share)

    @property
    def best_share_text(self) -> str:
        return percent(self.best_share)

    @property
    def agrees(self) -> bool:
        return bool(self.declared) and self.declared == self.best

    @property
    def disagrees(self) -> bool:
        return bool(self.declared and self.best) and self.declared != self.best

    @property
    def no_line_under_declared(self) -> bool:
        return self.similarity_gap is not None and self.similarity_gap >= NO_LINE_GAP

    @property
    def gap_text(self) -> str:
        """The gap in words, or "" where there is nothing to say (not searched, or the closest line of all)."""
        if self.similarity_gap is None or not self.declared:
            return ""
        if self.no_line_under_declared:
            return f"no knowledge line under {self.declared}"
        if self.similarity_gap <= 0:
            return "the closest line of all"
        return f"{self.similarity_gap:.2f} less similar than the closest line of all"


@dataclass(frozen=True)
class AlternativeRow:
    code: str
    share: float
    description: str  # the code's own nomenclature text, "" where it is not loaded

    @property
    def share_text(self) -> str:
        return percent(self.share)


@dataclass(frozen=True)
class AnomalyRow:
    code: str
    title: str
    reason: str


def level_comparison(*, evidence: dict, declared_code: str) -> list[LevelRow]:
    """The declared code against the evidence at chapter, heading and subheading, from a verdict's evidence.

    The declared code's own support (`declared_support`, written in check mode) gives its share, its closest
    line and the level's best code over the whole vote. Where a level has no such entry (suggest or fill
    mode, or a declared code that stops short of it), the level's kept candidates (`by_level`) give the best
    code, and the declared code's share when it is among them. Levels that neither the declared code nor
    the evidence reaches are left out.
    """
    support_by_level = {entry["level"]: entry for entry in evidence.get("declared_support") or []}
    candidates_by_level = evidence.get("by_level") or {}
    rows = []
    for level in LEVEL_NAMES:
        declared = declared_code[:level] if len(declared_code) >= level else ""
        candidates = candidates_by_level.get(str(level)) or []
        support = support_by_level.get(level)
        if support is not None:
            line = support.get("closest_line")
            row = LevelRow(
                level=level, declared=support["declared"], declared_share=support["declared_share"],
                closest_line=None if line is None else ClosestLine(
                    code=line["code"], text=line["text"], similarity=line["score"], entry_id=line.get("entry_id")),
                similarity_gap=support.get("similarity_gap"), best=support["best"], best_share=support["best_share"],
            )
        elif declared or candidates:
            best = candidates[0] if candidates else None
            declared_share = next((candidate["share"] for candidate in candidates if candidate["code"] == declared),
                                  None) if declared else None
            row = LevelRow(level=level, declared=declared, declared_share=declared_share, closest_line=None,
                           similarity_gap=None, best=best["code"] if best else "",
                           best_share=best["share"] if best else None)
        else:
            continue
        rows.append(row)
    return rows


def alternative_rows(*, evidence: dict, descriptions: dict[str, list[tuple[str, str]]]) -> list[AlternativeRow]:
    """The recommendation's level's best candidates with their own nomenclature text (code_descriptions' output)."""
    rows = []
    for candidate in evidence.get("alternatives") or []:
        code = candidate["code"]
        own_text = next((text for prefix, text in descriptions.get(code, []) if prefix == code), "")
        rows.append(AlternativeRow(code=code, share=candidate["share"], description=own_text))
    return rows


def anomaly_rows(anomalies: list[dict]) -> tuple[list[AnomalyRow], list[AnomalyRow]]:
    """(about the declared code, the rest): each with a title in words beside the reason."""
    disagreements, others = [], []
    for anomaly in anomalies or []:
        code, reason = anomaly.get("code", ""), anomaly.get("reason", "")
        if code in DISAGREEMENT_TITLES:
            disagreements.append(AnomalyRow(code=code, title=DISAGREEMENT_TITLES[code], reason=reason))
        else:
            title = OTHER_TITLES.get(code, code.replace("_", " ").capitalize())
            others.append(AnomalyRow(code=code, title=title, reason=reason))
    # Contradictions before the milder "unconfirmed" and the rest, in the order DISAGREEMENT_TITLES gives.
    order = list(DISAGREEMENT_TITLES)
    disagreements.sort(key=lambda row: order.index(row.code))
    return disagreements, others


@dataclass(frozen=True)
class ItemScreen:
    """Everything an item page shows about the verdict, in display form."""

    verdict: Verdict | None
    tier_colour: str
    confidence_text: str
    margin_text: str
    best_similarity_text: str
    levels: list[LevelRow]
    alternatives: list[AlternativeRow]
    disagreements: list[AnomalyRow]
    other_anomalies: list[AnomalyRow]
    code_texts: dict[str, list[tuple[str, str]]]  # declared and recommended codes' nomenclature lines
    neighbours: list[dict]


def item_screen(*, item: DeclarationItem) -> ItemScreen:
    """The review screen of one item (one query for the codes' nomenclature text)."""
    verdict = getattr(item, "verdict", None)
    evidence = (verdict.evidence or {}) if verdict else {}
    alternatives = evidence.get("alternatives") or []
    codes = [code for code in (item.declared_code, verdict.recommended_code if verdict else "") if code]
    descriptions = code_descriptions(list(dict.fromkeys(codes + [candidate["code"] for candidate in alternatives])))
    disagreements, others = anomaly_rows(verdict.anomalies if verdict else [])
    return ItemScreen(
        verdict=verdict,
        tier_colour=TIER_COLOURS.get(verdict.tier, "") if verdict else "",
        confidence_text=two_decimals(verdict.confidence) if verdict else "",
        margin_text=two_decimals(verdict.margin) if verdict else "",
        best_similarity_text=two_decimals(verdict.best_similarity) if verdict else "",
        levels=level_comparison(evidence=evidence, declared_code=item.declared_code) if verdict else [],
        alternatives=alternative_rows(evidence=evidence, descriptions=descriptions),
        disagreements=disagreements,
        other_anomalies=others,
        code_texts={code: descriptions.get(code, []) for code in codes},
        neighbours=[neighbour_row(neighbour) for neighbour in evidence.get("neighbours") or []],
    )


def neighbour_row(neighbour: dict) -> dict:
    """A stored piece of evidence for display: its similarity with two decimals, and words for a prototype
    (the centroid of a chapter's or heading's lines has no text of its own)."""
    row = {**neighbour, "score_text": two_decimals(neighbour.get("score"))}
    if neighbour.get("source") == PROTOTYPE_SOURCE and not neighbour.get("text"):
        code = neighbour.get("code", "")
        row["text"] = f"the average of the {LEVEL_NAMES.get(len(code), 'code')} {code}'s lines"
    return row
