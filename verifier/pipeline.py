"""The verification pipeline: claim pending items, embed and judge them in batches, write verdicts.

Item state lives in PostgreSQL (pending -> processing -> verified), so a lost task or a
dead worker costs a retry, never an item: the sweeper returns work stuck in
`processing` to `pending`. Every step is safe to run twice: a verdict is unique per
item and written with an upsert.
"""
from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from embeddings.binary_parameters import binary_parameter_cursor
from embeddings.errors import CircuitOpen, EmbeddingError
from embeddings.store import active_space

from .models import DeclarationBatch, DeclarationItem, HsCode, Verdict
from .routing import RoutingDecision, load_thresholds, route, route_meaningless
from .services import evidence_text, glossary_mapping

logger = logging.getLogger(__name__)

# Items claimed per chunk: one embedding call (split by the client) and one kNN query each.
CLAIM_CHUNK_ITEMS = 500
# After this many failed attempts an item is marked failed (with its last error) instead of retried forever.
MAX_ATTEMPTS = 8
# Neighbours kept on a verdict as its explanation.
EVIDENCE_KEPT = 10


def claim_items(*, limit: int = CLAIM_CHUNK_ITEMS) -> tuple[list[DeclarationItem], datetime]:
    """Claim up to `limit` pending items for this worker: SELECT ... FOR UPDATE SKIP LOCKED, then mark processing.

    Two workers never claim the same item; the claim time identifies this claim when results are written.
    """
    claimed_at = timezone.now()
    with transaction.atomic():
        ids = list(
            DeclarationItem.objects.select_for_update(skip_locked=True)
            .filter(status=DeclarationItem.Status.PENDING)
            .order_by("id")
            .values_list("id", flat=True)[:limit]
        )
        if ids:
            DeclarationItem.objects.filter(id__in=ids).update(
                status=DeclarationItem.Status.PROCESSING, claimed_at=claimed_at
            )
    items = list(DeclarationItem.objects.filter(id__in=ids).select_related("batch").order_by("id"))
    return items, claimed_at


def process_pending(*, chunk_size: int = CLAIM_CHUNK_ITEMS, time_budget_seconds: float | None = None) -> int:
    """Claim and judge chunks until no item is pending (or the time budget is spent). Returns items verified."""
    started = time.monotonic()
    verified = 0
    while time_budget_seconds is None or time.monotonic() - started < time_budget_seconds:
        items, claimed_at = claim_items(limit=chunk_size)
        if not items:
            break
        try:
            verified += judge_items(items=items, claimed_at=claimed_at)
        except EmbeddingError as error:
            # An open circuit made no call: the items were not tried, so it costs them no attempt.
            release_items(items=items, claimed_at=claimed_at, error=str(error),
                          count_attempt=not isinstance(error, CircuitOpen))
            logger.warning("verification of %d items postponed: %s", len(items), error)
            break
    return verified


def judge_items(*, items: list[DeclarationItem], claimed_at: datetime) -> int:
    """Judge claimed items and write their verdicts; returns how many were marked verified.

    1. Normalise each description; empty or meaningless ones get a warning verdict, no embedding.
    2. Find evidence for all the others at once (one embedding call, one nearest-neighbour query).
    3. Recommend a code from each item's evidence, and route by the batch's mode and the thresholds.
    4. Upsert the verdicts and mark the items verified, in one transaction.
    Raises EmbeddingError (items untouched) when the endpoint fails.
    """
    from .normalization import meaningless_reason, normalize_description
    from .recommendation import find_evidence, recommend_hs_code

    space = active_space()
    thresholds = load_thresholds(space)
    glossary = glossary_mapping()
    known_codes = _known_codes(items)

    normalized: dict[int, str] = {}
    meaningless: dict[int, str] = {}
    for item in items:
        fields = {"description_raw": item.description_raw, "product_name": item.product_name}
        reason = meaningless_reason(item.description_raw)
        normalized[item.pk] = normalize_description(evidence_text(fields), glossary=glossary) if not reason else ""
        if reason or not normalized[item.pk]:
            meaningless[item.pk] = reason or "the description is empty after normalisation"
    to_search = [item for item in items if item.pk not in meaningless]
    # Declarations repeat themselves: each distinct wording is embedded and searched once per chunk.
    distinct_texts = list(dict.fromkeys(normalized[item.pk] for item in to_search))
    evidence_by_text = dict(zip(distinct_texts, find_evidence(distinct_texts))) if distinct_texts else {}
    evidence_lists = [evidence_by_text[normalized[item.pk]] for item in to_search]

    verdicts: list[Verdict] = []
    for item in items:
        if item.pk in meaningless:
            decision = route_meaningless(reason=meaningless[item.pk], declared_code=item.declared_code)
            verdicts.append(_verdict(item=item, decision=decision, space=space))
    for item, evidence in zip(to_search, evidence_lists):
        recommendation = recommend_hs_code(evidence, declared_code=item.declared_code or None)
        best_similarity = recommendation.best_similarity
        code = recommendation.code or ""
        decision = route(
            mode=item.batch.mode,
            declared_code=item.declared_code,
            declared_code_known=_is_known(item.declared_code, known_codes),
            recommended_code=code,
            confidence=float(recommendation.confidence),
            margin=float(recommendation.margin),
            best_similarity=best_similarity,
            thresholds=thresholds.for_chapter((code or item.declared_code)[:2]),
        )
        verdicts.append(_verdict(
            item=item, decision=decision, space=space, recommended_code=code,
            recommended_level=recommendation.level or None, confidence=float(recommendation.confidence),
            margin=float(recommendation.margin), best_similarity=best_similarity,
            evidence=_explanation(evidence, recommendation),
        ))

    with transaction.atomic():
        still_ours = set(
            DeclarationItem.objects.select_for_update()
            .filter(id__in=[item.pk for item in items], status=DeclarationItem.Status.PROCESSING, claimed_at=claimed_at)
            .values_list("id", flat=True)
        )
        # A claim the sweeper took back (this worker was too slow) is someone else's now: write nothing for it.
        verdicts = [verdict for verdict in verdicts if verdict.item_id in still_ours]
        upsert_verdicts(verdicts)
        mark_verified(normalized={item_id: normalized[item_id] for item_id in still_ours})
    # After the commit: checked inside the transaction, two workers finishing a batch's last chunks at
    # the same time would each still see the other's items as processing, and neither would close it.
    finish_batches(batch_ids={item.batch_id for item in items})
    return len(still_ours)


def upsert_verdicts(verdicts: list[Verdict]) -> None:
    """Insert these verdicts, replacing an item's earlier one (a retry): one statement, binary column arrays.

    Not bulk_create: it sends each column as a text array, and escaping the evidence JSON for that
    (every quote, in Python) cost about half a millisecond per item.
    """
    if not verdicts:
        return

    def number(value) -> float | None:  # one element type per array: binary arrays do not mix int and float
        return None if value is None else float(value)

    columns = [
        [verdict.item_id for verdict in verdicts],
        [str(verdict.recommended_code) for verdict in verdicts],
        [verdict.recommended_level for verdict in verdicts],
        [number(verdict.confidence) for verdict in verdicts],
        [number(verdict.margin) for verdict in verdicts],
        [number(verdict.best_similarity) for verdict in verdicts],
        [str(verdict.tier) for verdict in verdicts],
        [number(verdict.risk) for verdict in verdicts],
        [json.dumps(verdict.anomalies, ensure_ascii=False) for verdict in verdicts],
        [json.dumps(verdict.evidence, ensure_ascii=False) for verdict in verdicts],
        [str(verdict.final_code) for verdict in verdicts],
        [verdict.space_id for verdict in verdicts],
        [bool(verdict.reviewed) for verdict in verdicts],
    ]
    with binary_parameter_cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO verifier_verdict (item_id, recommended_code, recommended_level, confidence, margin,
                best_similarity, tier, risk, anomalies, evidence, final_code, space_id, reviewed, created_at)
            SELECT item_id, recommended_code, recommended_level, confidence, margin, best_similarity, tier, risk,
                   anomalies::jsonb, evidence::jsonb, final_code, space_id, reviewed, now()
            FROM unnest(%b::bigint[], %b::text[], %b::smallint[], %b::float8[], %b::float8[], %b::float8[],
                        %b::text[], %b::float8[], %b::text[], %b::text[], %b::text[], %b::bigint[], %b::boolean[])
                 AS incoming(item_id, recommended_code, recommended_level, confidence, margin, best_similarity,
                             tier, risk, anomalies, evidence, final_code, space_id, reviewed)
            ON CONFLICT (item_id) DO UPDATE SET
                recommended_code = EXCLUDED.recommended_code, recommended_level = EXCLUDED.recommended_level,
                confidence = EXCLUDED.confidence, margin = EXCLUDED.margin,
                best_similarity = EXCLUDED.best_similarity, tier = EXCLUDED.tier, risk = EXCLUDED.risk,
                anomalies = EXCLUDED.anomalies, evidence = EXCLUDED.evidence, final_code = EXCLUDED.final_code,
                space_id = EXCLUDED.space_id, reviewed = EXCLUDED.reviewed
            """,
            columns, prepare=False,
        )


def mark_verified(*, normalized: dict[int, str]) -> None:
    """Store each item's normalised description and mark it verified: one UPDATE for the chunk."""
    if not normalized:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE verifier_declarationitem AS item
            SET status = %s, last_error = '', description_normalized = judged.normalized
            FROM unnest(%s::bigint[], %s::text[]) AS judged(id, normalized)
            WHERE item.id = judged.id
            """,
            [DeclarationItem.Status.VERIFIED, list(normalized), list(normalized.values())],
        )


def _verdict(*, item: DeclarationItem, decision: RoutingDecision, space, **values) -> Verdict:
    return Verdict(item=item, tier=decision.tier, anomalies=decision.anomalies, risk=decision.risk,
                   final_code=decision.final_code, space=space, reviewed=False, **values)


def _explanation(evidence: list, recommendation) -> dict:
    """Neighbours and alternatives as plain JSON, kept on the verdict for reviewers."""
    # Built field by field: dataclasses.asdict per neighbour costs more than the vote itself.
    return {
        "neighbours": [
            {"entry_id": entry.entry_id, "code": entry.code, "source": entry.source, "language": entry.language,
             "score": round(entry.score, 4), "text": entry.text}
            for entry in evidence[:EVIDENCE_KEPT]
        ],
        "alternatives": [{"code": candidate.code, "share": round(candidate.share, 4)}
                         for candidate in recommendation.alternatives],
        "declared_share": recommendation.declared_share,
    }


def _known_codes(items: list[DeclarationItem]) -> set[str]:
    """Which of the declared codes (or their 6- and 8-digit prefixes) are in the nomenclature: one query."""
    candidates = {code[:length] for item in items if (code := item.declared_code) for length in (6, 8, 10)
                  if length <= len(code)} | {item.declared_code for item in items if item.declared_code}
    if not candidates:
        return set()
    return set(HsCode.objects.filter(code__in=candidates).values_list("code", flat=True))


def _is_known(code: str, known_codes: set[str]) -> bool:
    """A national code (8 or 10 digits) counts as known when its line or its 6-digit subheading is loaded."""
    return bool(code) and (code in known_codes or any(code[:n] in known_codes for n in (6, 8) if n < len(code)))


def release_items(*, items: list[DeclarationItem], claimed_at: datetime, error: str, count_attempt: bool = True) -> None:
    """Give claimed items back to the queue after a failure (attempts + 1); past MAX_ATTEMPTS mark them failed."""
    ids = [item.pk for item in items]
    with transaction.atomic():
        claimed = DeclarationItem.objects.filter(id__in=ids, status=DeclarationItem.Status.PROCESSING,
                                                 claimed_at=claimed_at)
        if not count_attempt:
            claimed.update(status=DeclarationItem.Status.PENDING, claimed_at=None, last_error=error[:2000])
            return
        claimed.filter(attempts__gte=MAX_ATTEMPTS - 1).update(
            status=DeclarationItem.Status.FAILED, attempts=F("attempts") + 1, claimed_at=None, last_error=error[:2000],
        )
        claimed.update(status=DeclarationItem.Status.PENDING, attempts=F("attempts") + 1, claimed_at=None,
                       last_error=error[:2000])
    finish_batches(batch_ids={item.batch_id for item in items})


def sweep_stuck_items(*, older_than_seconds: int | None = None) -> int:
    """Return items left in `processing` past the timeout (their worker died) to `pending`. Returns how many."""
    timeout = older_than_seconds if older_than_seconds is not None else settings.STUCK_WORK_TIMEOUT_SECONDS
    cutoff = timezone.now() - timedelta(seconds=timeout)
    return DeclarationItem.objects.filter(
        status=DeclarationItem.Status.PROCESSING, claimed_at__lt=cutoff
    ).update(status=DeclarationItem.Status.PENDING, claimed_at=None, attempts=F("attempts") + 1)


def has_pending_items() -> bool:
    return DeclarationItem.objects.filter(status=DeclarationItem.Status.PENDING).exists()


def finish_batches(*, batch_ids: set[int] | None = None) -> int:
    """Mark batches done once none of their items is pending or processing (all processing batches when None)."""
    open_items = DeclarationItem.objects.filter(
        batch_id=OuterRef("pk"),
        status__in=[DeclarationItem.Status.PENDING, DeclarationItem.Status.PROCESSING],
    )
    batches = DeclarationBatch.objects.filter(status=DeclarationBatch.Status.PROCESSING)
    if batch_ids is not None:
        batches = batches.filter(id__in=batch_ids)
    return batches.exclude(Exists(open_items)).update(status=DeclarationBatch.Status.DONE)
