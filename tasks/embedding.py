"""Celery tasks for embedding: building a new embedding space in time slices, and the periodic sync."""
from __future__ import annotations

from celery import shared_task

from common.locks import one_run_at_a_time
from embeddings.errors import EmbeddingError
from embeddings.services import build_space_for_a_while, drop_retired_spaces
from embeddings.services import sync_embeddings as sync


# An endpoint failure leaves the chunk pending (nothing saved); the task retries with backoff, forever:
# the build's state is in PostgreSQL, and the periodic sync re-queues it if even this message is lost.
@shared_task(name="embeddings.build_embedding_space", bind=True, acks_late=True, autoretry_for=(EmbeddingError,),
             retry_backoff=5, retry_backoff_max=300, retry_jitter=True, max_retries=None)
def build_embedding_space(self, space_id: int) -> None:
    build_space_for_a_while(space_id=space_id)


@shared_task(name="embeddings.drop_retired_embedding_spaces", acks_late=True)
def drop_retired_embedding_spaces() -> int:
    return drop_retired_spaces()


@shared_task(name="embeddings.sync_embeddings", acks_late=True)
@one_run_at_a_time("embeddings.sync_embeddings")
def sync_embeddings() -> dict | None:
    report = sync()
    return {"seen": report.objects_seen, "embedded": report.objects_embedded, "failed": report.failed_corpora}
