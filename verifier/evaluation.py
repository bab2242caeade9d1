"""Evaluation through the production path: check mode on declarations with known-wrong codes, and learning
from approvals block by block (prequential).

Both import the labelled rows as a real check-mode batch, let the pipeline judge them (claim, normalise,
embed, search, vote, route) and read the verdicts back; the batch, its items and any reference the
evaluation approved are deleted at the end, so nothing stays in the knowledge base.
"""
from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace

from django.contrib.auth import get_user_model
from django.db import transaction

from .check_sets import declared_is_right
from .models import DeclarationBatch, DeclarationItem, KnowledgeEntry, Review, Verdict
from .pipeline import claim_items, judge_items
from .recommendation import LEVELS, LabelledDescription
from .services import create_batch, import_declaration_objects, index_knowledge_entries, review_item

TIERS = (Verdict.Tier.AUTO_PASS, Verdict.Tier.MANUAL_REVIEW, Verdict.Tier.WARNING)
EVALUATION_USER = "evaluation-bot"


@dataclass(frozen=True)
class JudgedRow:
    row: LabelledDescription
    tier: str
    recommended_code: str
    final_code: str
    path: tuple[str, ...]  # the code chosen at each level, top-down
    anomalies: tuple[str, ...]
    confidence: float = 0.0
    margin: float = 0.0
    best_similarity: float | None = None
    evidence: dict = field(default_factory=dict)


@dataclass
class CheckReport:
    """Shares of right and wrong declarations in each tier; a declaration is right when its declared code
    equals the label at the deepest level both have (at most 6 digits)."""

    judged: list[JudgedRow] = field(default_factory=list)

    def to_json(self) -> dict:
        groups: dict[str, list[JudgedRow]] = {"correct": [], "wrong": [], "near_wrong": [], "far_wrong": []}
        for judged in self.judged:
            if declared_is_right(judged.row.declared_code, judged.row.hs_code):
                groups["correct"].append(judged)
            else:
                groups["wrong"].append(judged)
                near = judged.row.declared_code[:2] == judged.row.hs_code[:2]
                groups["near_wrong" if near else "far_wrong"].append(judged)
        figures: dict = {"check_n": len(self.judged)}
        for name, members in groups.items():
            figures[f"{name}_n"] = len(members)
            tiers = Counter(member.tier for member in members)
            for tier, short in ((Verdict.Tier.AUTO_PASS, "auto_pass"), (Verdict.Tier.WARNING, "warning"),
                                (Verdict.Tier.MANUAL_REVIEW, "review")):
                figures[f"{name}_{short}"] = tiers[tier] / len(members) if members else None
        auto = [judged for judged in self.judged if judged.tier == Verdict.Tier.AUTO_PASS]
        figures["auto_pass_precision_check"] = (
            sum(declared_is_right(j.row.declared_code, j.row.hs_code) for j in auto) / len(auto) if auto else None
        )
        warned = [judged for judged in self.judged if judged.tier == Verdict.Tier.WARNING]
        figures["warning_precision_check"] = (
            sum(not declared_is_right(j.row.declared_code, j.row.hs_code) for j in warned) / len(warned)
            if warned else None
        )
        figures["contradiction_raised"] = (
            sum("declared_code_contradicted" in j.anomalies for j in self.judged) / len(self.judged)
            if self.judged else None
        )
        return figures


def judge_rows(rows: list[LabelledDescription], *, mode: str = DeclarationBatch.Mode.CHECK) -> tuple[DeclarationBatch, list[JudgedRow]]:
    """Import the rows as one batch of `mode` and judge every item through the pipeline; the batch is kept.

    Item ids carry a token of this run, so earlier runs (or live declarations) never make them duplicates.
    """
    token = uuid.uuid4().hex[:12]
    batch = create_batch(source=DeclarationBatch.Source.API, mode=mode, file_name=f"evaluation {token}")
    objects = [
        {"id": f"eval-{token}-{position}", "description": row.description, "language": row.language,
         **({"hs_code": row.declared_code} if row.declared_code else {})}
        for position, row in enumerate(rows)
    ]
    import_declaration_objects(batch=batch, objects=objects)
    open_items = DeclarationItem.objects.filter(
        batch=batch, status__in=[DeclarationItem.Status.PENDING, DeclarationItem.Status.PROCESSING])
    while open_items.exists():
        # This process judges what it claims; a worker (or another evaluation) may hold the rest for a while.
        items, claimed_at = claim_items()
        if items:
            judge_items(items=items, claimed_at=claimed_at)
        else:
            time.sleep(0.2)
    items = (DeclarationItem.objects.filter(batch=batch).select_related("verdict").order_by("external_id"))
    by_position = {int(item.external_id.rsplit("-", 1)[1]): item for item in items}
    judged = []
    for position, row in enumerate(rows):
        item = by_position.get(position)
        verdict = getattr(item, "verdict", None) if item is not None else None
        if verdict is None:  # a row the importer refused, or an item that failed: counted as a review
            judged.append(JudgedRow(row, Verdict.Tier.MANUAL_REVIEW, "", "", (), ()))
            continue
        path = tuple(verdict.evidence.get("path", ()))
        judged.append(JudgedRow(row=row, tier=verdict.tier, recommended_code=verdict.recommended_code,
                                final_code=verdict.final_code, path=path,
                                anomalies=tuple(anomaly["code"] for anomaly in verdict.anomalies),
                                confidence=verdict.confidence, margin=verdict.margin,
                                best_similarity=verdict.best_similarity, evidence=verdict.evidence))
    return batch, judged


def evaluate_check_mode(rows: list[LabelledDescription]) -> CheckReport:
    """Judge rows that carry a declared code in check mode, as production would; nothing is kept."""
    return CheckReport(judged=judge_and_forget(rows))


def judge_and_forget(rows: list[LabelledDescription], *, mode: str = DeclarationBatch.Mode.CHECK) -> list[JudgedRow]:
    """judge_rows, then delete the batch: the verdicts' figures are returned, nothing is kept."""
    batch, judged = judge_rows(rows, mode=mode)
    _delete_batch(batch)
    return judged


@dataclass
class PrequentialBlock:
    n: int
    references_before: int
    judged: list[JudgedRow]

    def to_json(self) -> dict:
        def top1(level: int) -> float | None:
            applicable = [j for j in self.judged if len(j.row.hs_code) >= level]
            if not applicable:
                return None
            return sum(any(code == j.row.hs_code[:level] for code in j.path if len(code) == level)
                       for j in applicable) / len(applicable)

        auto = [j for j in self.judged if j.tier == Verdict.Tier.AUTO_PASS]
        right = [j for j in auto if declared_is_right(j.final_code, j.row.hs_code)]
        return {
            "n": self.n, "references_before": self.references_before,
            **{f"top1_{level}": top1(level) for level in LEVELS},
            "recommendation_at_4": sum(len(j.recommended_code) >= 4 for j in self.judged) / self.n if self.n else None,
            "auto_pass_share": len(auto) / self.n if self.n else None,
            "auto_pass_precision": len(right) / len(auto) if auto else None,
        }


def evaluate_prequential(rows: list[LabelledDescription], *, blocks: int, seed: int = 1) -> list[PrequentialBlock]:
    """Judge the shuffled rows in `blocks` blocks; after each, approve its true codes through the review path.

    1. Shuffle (fixed seed) and cut into blocks.
    2. Judge a block in suggest mode (the declared codes, if any, are not shown to the pipeline).
    3. A reviewer sets each item's true code (Review SET_CODE): the items become references and are indexed
       now, as the indexing task would do within a minute.
    4. The next block is judged with those references in the knowledge base. At the end every batch and
       every reference the evaluation made is deleted.
    """
    if blocks < 1:
        raise ValueError("blocks must be at least 1")
    shuffled = list(rows)
    random.Random(seed).shuffle(shuffled)
    size = -(-len(shuffled) // blocks)
    reviewer = _evaluation_reviewer()
    batches: list[DeclarationBatch] = []
    results: list[PrequentialBlock] = []
    references = 0
    try:
        for start in range(0, len(shuffled), size):
            block = [replace(row, declared_code="") for row in shuffled[start:start + size]]
            batch, judged = judge_rows(block, mode=DeclarationBatch.Mode.SUGGEST)
            batches.append(batch)
            results.append(PrequentialBlock(n=len(block), references_before=references, judged=judged))
            references += _approve_true_codes(batch=batch, rows=block, reviewer=reviewer)
    finally:
        for batch in batches:
            _delete_batch(batch)
    return results


def _approve_true_codes(*, batch: DeclarationBatch, rows: list[LabelledDescription], reviewer) -> int:
    items = {int(item.external_id.rsplit("-", 1)[1]): item
             for item in DeclarationItem.objects.filter(batch=batch).select_related("batch")}
    for position, row in enumerate(rows):
        if position in items:
            review_item(item=items[position], reviewer=reviewer, action=Review.Action.SET_CODE, code=row.hs_code)
    entry_ids = list(KnowledgeEntry.objects.filter(
        source=KnowledgeEntry.Source.REFERENCE, identity_key__in=[item.identity_key for item in items.values()],
    ).values_list("id", flat=True))
    index_knowledge_entries(entry_ids=entry_ids)
    return len(entry_ids)


def _evaluation_reviewer():
    user, _ = get_user_model().objects.get_or_create(
        username=EVALUATION_USER, defaults={"is_active": False},  # never logs in: it only signs evaluation reviews
    )
    return user


@transaction.atomic
def _delete_batch(batch: DeclarationBatch) -> None:
    """The batch, its items and verdicts, and any reference its items became (vectors included)."""
    from .knowledge import delete_knowledge_vectors

    keys = list(DeclarationItem.objects.filter(batch=batch).values_list("identity_key", flat=True))
    references = KnowledgeEntry.objects.filter(source=KnowledgeEntry.Source.REFERENCE, identity_key__in=keys)
    delete_knowledge_vectors(entry_ids=list(references.values_list("id", flat=True)))
    references.delete()
    # The evaluation's own reviews: the audit trail is append-only for real decisions, and these were none.
    Review.objects.filter(item__batch=batch).delete()
    batch.delete()

