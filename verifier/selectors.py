"""Reads of the verification domain: batch progress, verdict summaries, the review page's evidence."""
from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Q, QuerySet

from common.scripts import CJK_CHARACTER_CLASS

from .models import DeclarationBatch, DeclarationItem, GlossaryTerm, HsCode, ImportRowError, KnowledgeEntry, Verdict

# Buckets of the confidence histogram on the batch page.
CONFIDENCE_BUCKETS = 10


def knowledge_texts_after(after_id: int, limit: int, *, cjk: bool) -> list[tuple[int, str]]:
    """A knowledge corpus for the re-indexer: (id, text) of entries after `after_id` in id order, those
    with CJK text or the others (models.knowledge_corpus, the same rule in SQL)."""
    entries = KnowledgeEntry.objects.filter(id__gt=after_id)
    entries = (entries.filter(text__regex=CJK_CHARACTER_CLASS) if cjk
               else entries.exclude(text__regex=CJK_CHARACTER_CLASS))
    return list(entries.order_by("id").values_list("id", "text")[:limit])


@dataclass(frozen=True)
class BatchProgress:
    batch_id: int
    status: str
    mode: str
    rows_read: int
    items_created: int
    duplicates: int
    rows_rejected: int
    items_by_status: dict[str, int]
    items_by_tier: dict[str, int]
    failure_reason: str

    @property
    def items_done(self) -> int:
        return self.items_by_status.get("verified", 0) + self.items_by_status.get("failed", 0)

    @property
    def items_total(self) -> int:
        """Items to judge: the import's count once it ends, the items written so far while it runs."""
        return max(self.items_created, sum(self.items_by_status.values()))

    @property
    def items_failed(self) -> int:
        return self.items_by_status.get("failed", 0)

    @property
    def fraction_done(self) -> float:
        if not self.items_total:
            return 0.0 if self.status == "importing" else 1.0
        return self.items_done / self.items_total

    @property
    def percent_done(self) -> int:
        """Whole percent, rounded down: 100 only when every item is done."""
        return int(self.fraction_done * 100)

    def as_json(self) -> dict:
        return {
            "batch": self.batch_id, "status": self.status, "mode": self.mode, "rows_read": self.rows_read,
            "items_created": self.items_created, "duplicates": self.duplicates, "rows_rejected": self.rows_rejected,
            "items_by_status": self.items_by_status, "items_by_tier": self.items_by_tier,
            "items_done": self.items_done, "items_total": self.items_total, "items_failed": self.items_failed,
            "fraction_done": round(self.fraction_done, 4), "percent_done": self.percent_done,
            "failure_reason": self.failure_reason,
        }


def batch_progress(*, batch: DeclarationBatch) -> BatchProgress:
    """Counts of a batch's items by status and by verdict tier (two aggregate queries)."""
    by_status = dict(
        DeclarationItem.objects.filter(batch=batch).values_list("status").annotate(n=Count("id"))
        .values_list("status", "n")
    )
    by_tier = dict(
        Verdict.objects.filter(item__batch=batch).values_list("tier").annotate(n=Count("id")).values_list("tier", "n")
    )
    return BatchProgress(
        batch_id=batch.pk, status=batch.status, mode=batch.mode, rows_read=batch.rows_read,
        items_created=batch.items_created, duplicates=batch.duplicates, rows_rejected=batch.rows_rejected,
        items_by_status=by_status, items_by_tier=by_tier, failure_reason=batch.failure_reason,
    )


def confidence_histogram(*, batch: DeclarationBatch, buckets: int = CONFIDENCE_BUCKETS) -> list[dict]:
    """Verdicts of a batch per confidence bucket [i/buckets, (i+1)/buckets), counted in the database."""
    filters = {
        f"b{index}": Count("id", filter=Q(confidence__gte=index / buckets) & (
            Q(confidence__lt=(index + 1) / buckets) if index < buckets - 1 else Q()
        ))
        for index in range(buckets)
    }
    counts = Verdict.objects.filter(item__batch=batch).aggregate(**filters)
    return [
        {"low": index / buckets, "high": (index + 1) / buckets, "count": counts[f"b{index}"] or 0}
        for index in range(buckets)
    ]


def batch_items(*, batch: DeclarationBatch) -> QuerySet[DeclarationItem]:
    return DeclarationItem.objects.filter(batch=batch).select_related("verdict").order_by("id")


def batch_row_errors(*, batch: DeclarationBatch) -> QuerySet[ImportRowError]:
    return ImportRowError.objects.filter(batch=batch).order_by("row_number")


def review_queue(*, tier: str | None = None) -> QuerySet[DeclarationItem]:
    """Items whose verdict awaits review, riskiest first (index verdict_review_queue_idx)."""
    queryset = DeclarationItem.objects.filter(verdict__reviewed=False).exclude(verdict__tier=Verdict.Tier.AUTO_PASS)
    if tier:
        queryset = queryset.filter(verdict__tier=tier)
    return queryset.select_related("verdict", "batch").order_by("-verdict__risk", "id")


def code_descriptions(codes: list[str]) -> dict[str, list[tuple[str, str]]]:
    """Nomenclature text for codes and their parents (6, 4, 2 digits), per code: [(code, description)], coarse first."""
    wanted = {code[:length] for code in codes if code for length in (2, 4, 6, 8, 10) if length <= len(code)}
    lines: dict[str, list[str]] = {}
    for code, language, description in HsCode.objects.filter(code__in=wanted).order_by("code", "language") \
            .values_list("code", "language", "description"):
        lines.setdefault(code, []).append(f"[{language}] {description}")
    return {
        code: [(prefix, " / ".join(lines[prefix])) for length in (2, 4, 6, 8, 10)
               if length <= len(code) and (prefix := code[:length]) in lines]
        for code in codes if code
    }


def reviewed_calibration_samples(*, space_id: int | None = None, chapter: str | None = None) -> tuple[list, list]:
    """Suggest and check samples from reviewed items: the code a reviewer settled on is the right one.

    The latest review of an item counts; rejections say nothing about codes and are left out. Check
    samples are the reviewed items of check-mode batches that had a declared code.
    """
    from .calibration import check_sample, suggest_sample
    from .models import Review

    latest: dict[int, str] = {}
    for item_id, to_code, action in Review.objects.order_by("item_id", "created_at", "id").values_list(
        "item_id", "to_code", "action"
    ):
        latest[item_id] = "" if action == Review.Action.REJECT else to_code
    verdicts = Verdict.objects.filter(item_id__in=[item for item, code in latest.items() if code])
    if space_id is not None:
        verdicts = verdicts.filter(space_id=space_id)
    if chapter:
        verdicts = verdicts.filter(recommended_code__startswith=chapter)
    suggest, check = [], []
    for item_id, code, confidence, margin, best_similarity, evidence, declared, mode in verdicts.values_list(
        "item_id", "recommended_code", "confidence", "margin", "best_similarity", "evidence", "item__declared_code",
        "item__batch__mode",
    ):
        suggest.append(suggest_sample(recommended_code=code, right_code=latest[item_id], confidence=confidence,
                                      margin=margin, best_similarity=best_similarity))
        if declared and mode == DeclarationBatch.Mode.CHECK:
            check.append(check_sample(declared_code=declared, right_code=latest[item_id], evidence=evidence or {},
                                      best_similarity=best_similarity))
    return suggest, check


def glossary_mapping() -> dict[str, str]:
    """The staff glossary as {term: replacement}, as normalisation applies it."""
    return dict(GlossaryTerm.objects.values_list("term", "replacement"))
