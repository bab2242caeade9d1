"""Celery tasks for verification: each parses its arguments and calls one service."""
from __future__ import annotations

from celery import shared_task

# A task stops claiming new chunks after this long, well inside the soft time limit; the rest is
# picked up by the next task (the sweeper queues one while items are pending).
VERIFY_TIME_BUDGET_SECONDS = 240


@shared_task(name="verification.verify_pending_items", acks_late=True)
def verify_pending_items() -> int:
    """Claim and judge pending declaration items until none is left; safe to run twice or in parallel."""
    from verifier.pipeline import process_pending

    return process_pending(time_budget_seconds=VERIFY_TIME_BUDGET_SECONDS)


@shared_task(name="verification.sweep_stuck_items")
def sweep_stuck_items() -> int:
    """Return work stuck in processing to the queue, close finished batches, queue verification if anything waits."""
    from verifier.pipeline import finish_batches, has_pending_items, sweep_stuck_items as sweep

    swept = sweep()
    finish_batches()
    if has_pending_items():
        verify_pending_items.delay()
    return swept


@shared_task(name="verification.index_knowledge_entries", acks_late=True, autoretry_for=(Exception,),
             retry_backoff=5, retry_backoff_max=300, max_retries=10)
def index_knowledge_entries(*, entry_ids: list[int]) -> int:
    """Embed reference knowledge entries (approved declarations) so they are searchable."""
    from verifier.services import index_knowledge_entries as index

    return index(entry_ids=entry_ids)


@shared_task(name="verification.import_uploaded_batch", acks_late=True)
def import_uploaded_batch(*, batch_id: int) -> int:
    """Import an uploaded declaration file (stored under MEDIA_ROOT) into its batch; a second run does nothing."""
    from verifier.services import import_uploaded_batch as import_batch

    report = import_batch(batch_id=batch_id)
    return report.items_created if report else 0
