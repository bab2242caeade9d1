"""Celery tasks for verification: each parses its arguments and calls one service."""
from __future__ import annotations

from celery import shared_task

from common.locks import one_run_at_a_time
from verifier import pipeline, services

# A task stops claiming new chunks after this long, well inside the soft time limit; the rest is
# picked up by the next task (the sweeper queues one while items are pending).
VERIFY_TIME_BUDGET_SECONDS = 240


# bind: the task's id marks its claims, so this message delivered again after its worker died
# (acks_late + task_reject_on_worker_lost) takes back the items it had claimed, without the sweeper.
@shared_task(name="verification.verify_pending_items", bind=True, acks_late=True)
def verify_pending_items(self) -> int:
    """Claim and judge pending declaration items until none is left; safe to run twice or in parallel."""
    return pipeline.process_pending(time_budget_seconds=VERIFY_TIME_BUDGET_SECONDS, claimant=self.request.id or "")


@shared_task(name="verification.sweep_stuck_items")
@one_run_at_a_time("verification.sweep_stuck_items")
def sweep_stuck_items() -> int:
    """Return stuck work to the queue (items, and uploads left importing), close finished batches,
    queue verification if anything waits."""
    return services.sweep_stuck_work()


@shared_task(name="verification.index_knowledge_entries", acks_late=True, autoretry_for=(Exception,),
             retry_backoff=5, retry_backoff_max=300, max_retries=10)
def index_knowledge_entries(*, entry_ids: list[int]) -> int:
    """Embed reference knowledge entries (approved declarations) so they are searchable."""
    return services.index_knowledge_entries(entry_ids=entry_ids)


# Retried: a run that fails part-way (database restart, lost connection) is resumed by the next one, which
# skips what is imported and counts the batch's items afresh; the sweeper re-queues it if even this is lost.
@shared_task(name="verification.import_uploaded_batch", acks_late=True, autoretry_for=(Exception,),
             retry_backoff=10, retry_backoff_max=300, max_retries=5)
def import_uploaded_batch(*, batch_id: int) -> int:
    """Import an uploaded declaration file (stored in PostgreSQL with its batch); a second run does nothing."""
    report = services.import_uploaded_batch(batch_id=batch_id)
    return report.items_created if report else 0
