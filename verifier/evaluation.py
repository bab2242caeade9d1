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
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from embeddings.selectors import exact_nearest_neighbours, nearest_neighbours
from embeddings.services import embed_queries
from embeddings.store import active_space

from .calibration import check_sample, suggest_sample
from .check_sets import declaration_key, declared_is_right
from .labelled import LabelledDescription, read_labelled_csv
from .models import KNOWLEDGE_CORPORA, DeclarationBatch, DeclarationItem, KnowledgeEntry, Review, Verdict
from .normalization import meaningless_reason, searchable_description
from .pipeline import claim_items, judge_items
from .recommendation import DEFAULT_K, LEVELS, find_evidence, recommend_hs_code
from .routing import load_thresholds, route, route_meaningless
from .selectors import glossary_mapping
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


def judge_rows(
    rows: list[LabelledDescription], *, mode: str = DeclarationBatch.Mode.CHECK,
) -> tuple[DeclarationBatch, list[JudgedRow]]:
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


# --- suggest mode on labelled descriptions (the production path in memory: nothing stored) ----------------
EVALUATION_BATCH_SIZE = 256


@dataclass
class EvaluationReport:
    n: int = 0
    bad_rows: list[tuple[int, str]] = field(default_factory=list)
    # counts per metric: (hits, applicable items)
    hits: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    tiers: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    auto_correct: int = 0

    def fraction(self, metric: str) -> float | None:
        hits, applicable = self.hits.get(metric, (0, 0))
        return hits / applicable if applicable else None

    def to_json(self) -> dict:
        def share(count: int) -> float | None:
            return count / self.n if self.n else None

        auto = self.tiers.get("auto_pass", 0)
        return {
            "n": self.n,
            "top1_2": self.fraction("top1_2"), "top1_4": self.fraction("top1_4"), "top1_6": self.fraction("top1_6"),
            "top1_6_best": self.fraction("top1_6_best"), "top1_6_nearest": self.fraction("top1_6_nearest"),
            "top3": self.fraction("top3"),
            "tier_auto": share(auto), "tier_review": share(self.tiers.get("manual_review", 0)),
            "tier_warning": share(self.tiers.get("warning", 0)),
            "auto_precision": self.auto_correct / auto if auto else None,
        }


def evaluate_labelled(rows: list[LabelledDescription]) -> EvaluationReport:
    """Recommend a code for each labelled description as production does (suggest mode) and score it.

    1. Normalise with the staff glossary; meaningless descriptions get their warning, as in production.
    2. Find evidence per batch (one embedding call, one nearest-neighbour query), recommend, route.
    3. Count top-1 at 2/4/6 digits (up to the label's length), top-3 at the label's length, tiers, and
       how many auto-passed recommendations agree with the label (at the shorter of the two codes).
    Reads only: nothing is stored as a reference, no item or verdict is written.
    """
    report = EvaluationReport()
    thresholds = load_thresholds(active_space())
    glossary = glossary_mapping()
    for start in range(0, len(rows), EVALUATION_BATCH_SIZE):
        batch = rows[start:start + EVALUATION_BATCH_SIZE]
        normalized = _search_texts(batch, glossary=glossary)
        searchable = [i for i, text in enumerate(normalized) if text]
        evidence_lists = dict(zip(searchable, find_evidence([normalized[i] for i in searchable])))
        for position, row in enumerate(batch):
            report.n += 1
            label = row.hs_code[:6]
            if position not in evidence_lists:
                decision = route_meaningless(reason=meaningless_reason(row.description) or "empty", declared_code="")
                recommendation = recommend_hs_code([])
            else:
                recommendation = recommend_hs_code(evidence_lists[position])
                decision = route(
                    mode=DeclarationBatch.Mode.SUGGEST, declared_code="", declared_code_known=False,
                    recommended_code=recommendation.code, confidence=recommendation.confidence,
                    margin=recommendation.margin, best_similarity=recommendation.best_similarity,
                    thresholds=thresholds.for_chapter(recommendation.code[:2]),
                )
            # Top-1 at a level is the code chosen there top-down, whether or not the recommendation stops there.
            chosen = {len(code): code for code in recommendation.path}
            for level in LEVELS:
                if len(label) >= level:
                    _count(report, f"top1_{level}", chosen.get(level) == label[:level])
            if len(label) >= 6:
                # Beside the top-down choice: the vote's best full-depth code, and a plain nearest neighbour's.
                best_full = recommendation.by_level.get(6, ())
                _count(report, "top1_6_best", bool(best_full) and best_full[0].code == label[:6])
                _count(report, "top1_6_nearest", bool(recommendation.evidence)
                       and recommendation.evidence[0].code[:6] == label[:6])
            top3 = [candidate.code for candidate in recommendation.by_level.get(len(label), ())[:3]]
            _count(report, "top3", label in top3)
            report.tiers[str(decision.tier)] += 1
            if decision.tier == "auto_pass":
                shared = min(len(recommendation.code), len(label))
                report.auto_correct += recommendation.code[:shared] == label[:shared]
    return report


def searchable_descriptions(rows: list[LabelledDescription]) -> list[str]:
    """The normalised descriptions evaluate_labelled searches for (meaningless ones get no search)."""
    return [text for text in _search_texts(rows, glossary=glossary_mapping()) if text]


def _search_texts(rows: list[LabelledDescription], *, glossary: dict[str, str]) -> list[str]:
    """Each row's normalised description, or "" where it gets no search (empty or meaningless)."""
    return [searchable_description(row.description, glossary=glossary).text for row in rows]


@dataclass(frozen=True)
class SearchRecall:
    share: float  # of the evidence returned, the share at least as close as the true k-th nearest
    lost: int  # descriptions that got none of their true k nearest


def measure_search_recall(descriptions: list[str], *, k: int = DEFAULT_K) -> SearchRecall:
    """How much of the true nearest evidence the production search (HNSW at settings.HS_SEARCH_EF) returns.

    Compares nearest_neighbours with an exact scan, description by description (normalised, as the
    pipeline searches them). A returned neighbour counts when it is at least as close as the exact
    k-th, so ties at the boundary are not misses.
    """
    space = active_space()
    counted = returned = lost = 0
    for start in range(0, len(descriptions), EVALUATION_BATCH_SIZE):
        vectors = embed_queries(descriptions[start:start + EVALUATION_BATCH_SIZE], task="hs_code", space=space)
        found = nearest_neighbours(space=space, corpus=KNOWLEDGE_CORPORA, vectors=vectors, k=k,
                                   ef_search=settings.HS_SEARCH_EF)
        exact = exact_nearest_neighbours(space=space, corpus=KNOWLEDGE_CORPORA, vectors=vectors, k=k)
        for production, truth in zip(found, exact):
            if not truth:
                continue
            boundary = truth[-1].score - 1e-6
            counted += len(truth)
            returned += sum(1 for neighbour in production if neighbour.score >= boundary)
            lost += not {n.object_id for n in production} & {n.object_id for n in truth}
    return SearchRecall(share=returned / counted if counted else 1.0, lost=lost)


def _count(report: EvaluationReport, metric: str, hit: bool) -> None:
    report.hits[metric][0] += int(hit)
    report.hits[metric][1] += 1


def labelled_calibration_samples(*, path) -> tuple[list, list]:
    """Suggest and check samples from a labelled CSV judged through the production path, storing nothing.

    Every row gives a suggest sample; rows with a declared_code (make_check_set) also a check sample.
    zh/en twins of one source item share a group, so cross-validation never splits them.
    """
    rows, _ = read_labelled_csv(path)
    suggest = [
        suggest_sample(recommended_code=judged.recommended_code, right_code=judged.row.hs_code,
                       confidence=judged.confidence, margin=judged.margin, best_similarity=judged.best_similarity,
                       group=declaration_key(judged.row.identifier))
        for judged in judge_and_forget([replace(row, declared_code="") for row in rows],
                                       mode=DeclarationBatch.Mode.SUGGEST)
        if judged.evidence
    ]
    checked = [row for row in rows if row.declared_code]
    check = [
        check_sample(declared_code=judged.row.declared_code, right_code=judged.row.hs_code, evidence=judged.evidence,
                     best_similarity=judged.best_similarity, group=declaration_key(judged.row.identifier))
        for judged in (judge_and_forget(checked) if checked else [])
        if judged.evidence
    ]
    return suggest, check
