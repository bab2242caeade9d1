"""The verification pipeline: claim pending items, embed and judge them in batches, write verdicts.

Item state lives in PostgreSQL (pending -> processing -> verified | failed), so a lost task or a
dead worker costs a retry, never an item: a redelivered task message takes back what its first
delivery claimed, and the sweeper returns work stuck in `processing` to `pending`. Every failure
counts an attempt; past MAX_ATTEMPTS the item is `failed` with the reason, so work always ends.
One bad item never holds back its chunk: a chunk that raises is split in halves down to single
items, and items that were in a chunk when its worker died are claimed again in ever smaller chunks.
Every step is safe to run twice: a verdict is unique per item and written with an upsert that
counts its writes (Verdict.writes), so a test can see an item judged twice.
"""
from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from embeddings.binary_parameters import binary_parameter_cursor
from embeddings.errors import CircuitOpen, EmbeddingError
from embeddings.store import active_space

from .models import DeclarationBatch, DeclarationItem, HsCode, Verdict
from .normalization import searchable_description
from .reuse import REPLACE_EARLIER_VERDICT, copy_verdicts, judgement_context, judgement_key, reusable_verdicts
from .routing import RoutingDecision, load_thresholds, route, route_meaningless
from .selectors import glossary_mapping

logger = logging.getLogger(__name__)

# Items claimed per chunk: one embedding call (split by the client) and one kNN query each.
CLAIM_CHUNK_ITEMS = 500
# After this many failed attempts an item is marked failed (with its last error) instead of retried forever.
MAX_ATTEMPTS = 8
# Neighbours kept on a verdict as its explanation.
EVIDENCE_KEPT = 10


def claim_items(*, limit: int = CLAIM_CHUNK_ITEMS, claimant: str = "") -> tuple[list[DeclarationItem], datetime]:
    """Claim up to `limit` pending items for this worker: SELECT ... FOR UPDATE SKIP LOCKED, then mark processing.

    Two workers never claim the same item; the claim time identifies this claim when results are written,
    and `claimant` (the task's id) lets a redelivered message take back what its first delivery claimed.
    Items whose worker was lost while they were claimed come back in smaller chunks (retry_chunk_limit):
    a worker killed by one item then costs its neighbours fewer attempts each time, until the culprit is
    judged alone. (An exception is isolated by splitting the chunk instead, and an endpoint outage is no
    item's fault: neither shrinks the claim.)
    """
    claimed_at = timezone.now()
    with transaction.atomic():
        candidates = list(
            DeclarationItem.objects.select_for_update(skip_locked=True)
            .filter(status=DeclarationItem.Status.PENDING)
            .order_by("id")
            .values_list("id", "attempts", "last_error")[:limit]
        )
        ids: list[int] = []
        allowed = limit
        for item_id, attempts, last_error in candidates:
            if last_error == WORKER_LOST_ERROR:
                allowed = min(allowed, retry_chunk_limit(limit, attempts))
            if len(ids) >= allowed:
                break
            ids.append(item_id)
        if ids:
            DeclarationItem.objects.filter(id__in=ids).update(
                status=DeclarationItem.Status.PROCESSING, claimed_at=claimed_at, claimed_by=claimant[:64]
            )
    items = list(DeclarationItem.objects.filter(id__in=ids).select_related("batch").order_by("id"))
    return items, claimed_at


def retry_chunk_limit(limit: int, attempts: int) -> int:
    """How many items a chunk may hold when one of them already failed `attempts` times.

    A quarter per attempt: a chunk of 500 whose worker was killed is retried as 125, 31, 7, then 1,
    so an item that kills its worker is alone by its fifth attempt, well before MAX_ATTEMPTS, and
    fails by itself; its former neighbours are judged in the smaller chunks on the way.
    """
    return max(1, limit >> (2 * attempts))


def process_pending(
    *, chunk_size: int = CLAIM_CHUNK_ITEMS, time_budget_seconds: float | None = None, claimant: str = "",
) -> int:
    """Claim and judge chunks until no item is pending (or the time budget is spent). Returns items verified.

    `claimant`: the task's id. A message delivered again after its worker died (acks_late with
    reject_on_worker_lost) first takes back the items its earlier delivery left in `processing`.
    """
    started = time.monotonic()
    verified = 0
    if claimant:
        take_back_lost_claim(claimant=claimant)
    while time_budget_seconds is None or time.monotonic() - started < time_budget_seconds:
        items, claimed_at = claim_items(limit=chunk_size, claimant=claimant)
        if not items:
            break
        try:
            verified += judge_isolating_failures(items=items, claimed_at=claimed_at)
        except EmbeddingError as error:
            # An open circuit made no call: the items were not tried, so it costs them no attempt.
            release_items(items=items, claimed_at=claimed_at, error=str(error),
                          count_attempt=not isinstance(error, CircuitOpen))
            logger.warning("verification of %d items postponed: %s", len(items), error)
            break
    return verified


# Errors that say nothing about the items: the endpoint or the database is down, or the task ran out of
# time. Splitting the chunk would only spend every item's attempts on an outage.
NOT_ITEM_FAILURES = (EmbeddingError, OperationalError, InterfaceError, SoftTimeLimitExceeded)


def judge_isolating_failures(*, items: list[DeclarationItem], claimed_at: datetime) -> int:
    """Judge a claimed chunk; when it raises, judge its halves, down to single items.

    A single item that still raises is released with the error (one attempt; failed past MAX_ATTEMPTS),
    and the rest of its chunk is verified. Outages (NOT_ITEM_FAILURES) are raised to the caller.
    """
    try:
        return judge_items(items=items, claimed_at=claimed_at)
    except NOT_ITEM_FAILURES:
        raise
    except Exception as error:  # noqa: BLE001 - any failure of one item must not stop the others
        if len(items) == 1:
            logger.exception("item %s could not be judged", items[0].pk)
            release_items(items=items, claimed_at=claimed_at, error=f"{type(error).__name__}: {error}")
            return 0
        logger.warning("a chunk of %d items failed (%s: %s); judging its halves", len(items),
                       type(error).__name__, error)
        middle = len(items) // 2
        return (judge_isolating_failures(items=items[:middle], claimed_at=claimed_at)
                + judge_isolating_failures(items=items[middle:], claimed_at=claimed_at))


def judge_items(*, items: list[DeclarationItem], claimed_at: datetime) -> int:
    """Judge claimed items and write their verdicts; returns how many were marked verified.

    1. Normalise each description; empty or meaningless ones get a warning verdict, no embedding.
    2. Find evidence for all the others at once (one embedding call, one nearest-neighbour query).
    3. Recommend a code from each item's evidence, and route by the batch's mode and the thresholds.
    4. Upsert the verdicts and mark the items verified, in one transaction.
    Raises EmbeddingError (items untouched) when the endpoint fails.
    """
    from .recommendation import find_evidence, recommend_hs_code

    space = active_space()
    thresholds = load_thresholds(space)
    glossary = glossary_mapping()
    known_codes = _known_codes(items)
    context = judgement_context(space=space, thresholds=thresholds)

    normalized: dict[int, str] = {}
    meaningless: dict[int, str] = {}
    keys: dict[int, bytes] = {}
    for item in items:
        searchable = searchable_description(item.description_raw, product_name=item.product_name, glossary=glossary)
        normalized[item.pk] = searchable.text
        if searchable.unsearchable_reason:
            meaningless[item.pk] = searchable.unsearchable_reason
        else:
            keys[item.pk] = judgement_key(context, mode=item.batch.mode, declared_code=item.declared_code,
                                          normalized_description=searchable.text)
    # Declarations repeat themselves: an item judged exactly like an earlier one copies that verdict
    # (verifier.reuse), and each distinct judgement left is made once per chunk.
    earlier = reusable_verdicts(set(keys.values()))
    copies = {item_id: earlier[key] for item_id, key in keys.items() if key in earlier}
    first_of_key: dict[bytes, DeclarationItem] = {}
    for item in items:
        if item.pk in keys and item.pk not in copies:
            first_of_key.setdefault(keys[item.pk], item)
    to_judge = list(first_of_key.values())
    # In check mode the declared code's own lines are searched too; a wording is embedded and searched once.
    searches = {item.pk: (normalized[item.pk], _checked_code(item)) for item in to_judge}
    distinct = list(dict.fromkeys(searches.values()))
    found = (find_evidence([text for text, _ in distinct], declared_codes=[code for _, code in distinct])
             if distinct else [])
    evidence_by_search = dict(zip(distinct, found))

    judged: dict[bytes, dict] = {}
    for item in to_judge:
        evidence = evidence_by_search[searches[item.pk]]
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
            path=recommendation.path,
            declared_support=recommendation.declared_support,
        )
        # In check mode the evidence can confirm the declared heading below where the vote alone stops.
        if len(decision.confirmed_code) > len(code):
            code = decision.confirmed_code
        judged[keys[item.pk]] = _verdict_fields(
            decision=decision, space=space, recommended_code=code,
            recommended_level=len(code) if code else None, confidence=float(recommendation.confidence),
            margin=float(recommendation.margin), best_similarity=best_similarity,
            evidence=_explanation(evidence, recommendation), judgement_key=keys[item.pk],
        )
    verdicts: list[Verdict] = []
    for item in items:
        if item.pk in meaningless:
            decision = route_meaningless(reason=meaningless[item.pk], declared_code=item.declared_code)
            verdicts.append(Verdict(item_id=item.pk, **_verdict_fields(decision=decision, space=space)))
        elif item.pk not in copies:
            verdicts.append(Verdict(item_id=item.pk, **judged[keys[item.pk]]))

    with transaction.atomic():
        still_ours = set(
            DeclarationItem.objects.select_for_update()
            .filter(id__in=[item.pk for item in items], status=DeclarationItem.Status.PROCESSING, claimed_at=claimed_at)
            .values_list("id", flat=True)
        )
        # A claim the sweeper took back (this worker was too slow) is someone else's now: write nothing for it.
        upsert_verdicts([verdict for verdict in verdicts if verdict.item_id in still_ours])
        wanted = {item_id: verdict_id for item_id, verdict_id in copies.items() if item_id in still_ours}
        # A verdict deleted or reviewed since it was looked up cannot be copied: its items are judged again.
        not_copied = set(wanted) - copy_verdicts(wanted)
        if not_copied:
            DeclarationItem.objects.filter(id__in=not_copied).update(
                status=DeclarationItem.Status.PENDING, claimed_at=None, claimed_by="")
        verified = still_ours - not_copied
        mark_verified(normalized={item_id: normalized[item_id] for item_id in verified})
    # After the commit: checked inside the transaction, two workers finishing a batch's last chunks at
    # the same time would each still see the other's items as processing, and neither would close it.
    finish_batches(batch_ids={item.batch_id for item in items})
    return len(verified)


def upsert_verdicts(verdicts: list[Verdict]) -> None:
    """Insert these verdicts, replacing an item's earlier one (a retry): one statement, binary column arrays.

    Not bulk_create: it sends each column as a text array, and escaping the evidence JSON for that
    (every quote, in Python) cost about half a millisecond per item.
    """
    if not verdicts:
        return

    def number(value) -> float | None:  # one element type per array: binary arrays do not mix int and float
        return None if value is None else float(value)

    serialised: dict[int, str] = {}  # items judged alike share one explanation: serialised once

    def as_json(value) -> str:
        if id(value) not in serialised:
            serialised[id(value)] = json.dumps(value, ensure_ascii=False)
        return serialised[id(value)]

    columns = [
        [verdict.item_id for verdict in verdicts],
        [str(verdict.recommended_code) for verdict in verdicts],
        [verdict.recommended_level for verdict in verdicts],
        [number(verdict.confidence) for verdict in verdicts],
        [number(verdict.margin) for verdict in verdicts],
        [number(verdict.best_similarity) for verdict in verdicts],
        [str(verdict.tier) for verdict in verdicts],
        [number(verdict.risk) for verdict in verdicts],
        [as_json(verdict.anomalies) for verdict in verdicts],
        [as_json(verdict.evidence) for verdict in verdicts],
        [str(verdict.final_code) for verdict in verdicts],
        [verdict.space_id for verdict in verdicts],
        [bool(verdict.reviewed) for verdict in verdicts],
        [verdict.judgement_key for verdict in verdicts],
    ]
    with binary_parameter_cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO verifier_verdict (item_id, recommended_code, recommended_level, confidence, margin,
                best_similarity, tier, risk, anomalies, evidence, final_code, space_id, reviewed, judgement_key,
                created_at)
            SELECT item_id, recommended_code, recommended_level, confidence, margin, best_similarity, tier, risk,
                   anomalies::jsonb, evidence::jsonb, final_code, space_id, reviewed, judgement_key, now()
            FROM unnest(%b::bigint[], %b::text[], %b::smallint[], %b::float8[], %b::float8[], %b::float8[],
                        %b::text[], %b::float8[], %b::text[], %b::text[], %b::text[], %b::bigint[], %b::boolean[],
                        %b::bytea[])
                 AS incoming(item_id, recommended_code, recommended_level, confidence, margin, best_similarity,
                             tier, risk, anomalies, evidence, final_code, space_id, reviewed, judgement_key)
            """ + REPLACE_EARLIER_VERDICT,
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
            SET status = %s, last_error = '', claimed_by = '', description_normalized = judged.normalized
            FROM unnest(%s::bigint[], %s::text[]) AS judged(id, normalized)
            WHERE item.id = judged.id
            """,
            [DeclarationItem.Status.VERIFIED, list(normalized), list(normalized.values())],
        )


def _verdict_fields(*, decision: RoutingDecision, space, **values) -> dict:
    """A verdict's fields but its item: items judged alike share them. (Ids, not instances: Django's
    related-object descriptors cost more than the rest of the verdict.)"""
    return {"tier": decision.tier, "anomalies": decision.anomalies, "risk": decision.risk,
            "final_code": decision.final_code, "space_id": space.id, "reviewed": False, **values}


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
        # What the reviewer's page and the check-mode evaluation read: the top-down choice, the best
        # candidates at each level, and the declared code's support at each level it reaches.
        "path": list(recommendation.path),
        "by_level": {str(level): [{"code": candidate.code, "share": round(candidate.share, 4)}
                                  for candidate in candidates]
                     for level, candidates in recommendation.by_level.items()},
        "declared_support": [support.to_json() for support in recommendation.declared_support],
    }


def _checked_code(item: DeclarationItem) -> str:
    """The declared code whose own evidence is searched: in check mode only (other modes do not judge it)."""
    return item.declared_code if item.batch.mode == DeclarationBatch.Mode.CHECK else ""


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


def release_items(
    *, items: list[DeclarationItem], claimed_at: datetime, error: str, count_attempt: bool = True,
) -> None:
    """Give claimed items back to the queue after a failure (attempts + 1); past MAX_ATTEMPTS mark them failed."""
    ids = [item.pk for item in items]
    with transaction.atomic():
        claimed = DeclarationItem.objects.filter(id__in=ids, status=DeclarationItem.Status.PROCESSING,
                                                 claimed_at=claimed_at)
        if not count_attempt:
            claimed.update(status=DeclarationItem.Status.PENDING, claimed_at=None, claimed_by="",
                           last_error=error[:2000])
            return
        _count_failed_attempt(claimed, error=error)
    finish_batches(batch_ids={item.batch_id for item in items})


def _count_failed_attempt(claimed, *, error: str) -> None:
    """One more attempt for these claimed items: back to pending, or failed with `error` past MAX_ATTEMPTS."""
    claimed.filter(attempts__gte=MAX_ATTEMPTS - 1).update(
        status=DeclarationItem.Status.FAILED, attempts=F("attempts") + 1, claimed_at=None, claimed_by="",
        last_error=error[:2000],
    )
    claimed.update(status=DeclarationItem.Status.PENDING, attempts=F("attempts") + 1, claimed_at=None,
                   claimed_by="", last_error=error[:2000])


# What an item's last_error says when its worker vanished while judging it (killed, out of memory,
# past the time limit): nothing else is known about it.
WORKER_LOST_ERROR = "the worker judging this item was lost (killed, out of memory or past its time limit)"


def take_back_lost_claim(*, claimant: str) -> int:
    """Items a task's earlier delivery left in `processing` (its worker died): count the attempt, requeue.

    Only a redelivered message has such items; for a first delivery this is one indexed query.
    """
    with transaction.atomic():
        lost = dict(DeclarationItem.objects.select_for_update().filter(
            status=DeclarationItem.Status.PROCESSING, claimed_by=claimant[:64]).values_list("id", "batch_id"))
        if not lost:
            return 0
        _count_failed_attempt(DeclarationItem.objects.filter(
            id__in=list(lost), status=DeclarationItem.Status.PROCESSING), error=WORKER_LOST_ERROR)
    count, batch_ids = len(lost), set(lost.values())
    logger.warning("task %s was delivered again: took back %d items its first delivery claimed", claimant, count)
    finish_batches(batch_ids=batch_ids)
    return count


def sweep_stuck_items(*, older_than_seconds: int | None = None) -> int:
    """Return items left in `processing` past the timeout (their worker died) to `pending`. Returns how many.

    Each sweep is an attempt: an item whose worker dies every time (it kills the worker) is failed
    after MAX_ATTEMPTS with the reason, and its batch can finish.
    """
    timeout = older_than_seconds if older_than_seconds is not None else settings.STUCK_WORK_TIMEOUT_SECONDS
    cutoff = timezone.now() - timedelta(seconds=timeout)
    with transaction.atomic():
        # SKIP LOCKED: a worker writing its verdicts right now holds these rows, and is not stuck.
        stuck = dict(DeclarationItem.objects.select_for_update(skip_locked=True).filter(
            status=DeclarationItem.Status.PROCESSING, claimed_at__lt=cutoff).values_list("id", "batch_id"))
        if not stuck:
            return 0
        _count_failed_attempt(DeclarationItem.objects.filter(
            id__in=list(stuck), status=DeclarationItem.Status.PROCESSING), error=WORKER_LOST_ERROR)
    count, batch_ids = len(stuck), set(stuck.values())
    finish_batches(batch_ids=batch_ids)
    return count


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
