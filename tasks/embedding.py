"""Celery tasks for embedding: building a new embedding space in chunks, and the periodic sync."""
from __future__ import annotations

import time

from celery import shared_task
from django.db import transaction

from embeddings.errors import EmbeddingError

from .locks import one_run_at_a_time

# One task run works this long, then queues the next run: progress is saved per chunk either way.
BUILD_SLICE_SECONDS = 60


# An endpoint failure leaves the chunk pending (nothing saved); the task retries with backoff, forever:
# the build's state is in PostgreSQL, and the periodic sync re-queues it if even this message is lost.
@shared_task(name="embeddings.build_embedding_space", bind=True, acks_late=True, autoretry_for=(EmbeddingError,),
             retry_backoff=5, retry_backoff_max=300, retry_jitter=True, max_retries=None)
def build_embedding_space(self, space_id: int) -> None:
    from embeddings.services import RETIRED_SPACE_GRACE_SECONDS, build_space_chunk, finish_space_build

    deadline = time.monotonic() + BUILD_SLICE_SECONDS
    while time.monotonic() < deadline:
        if build_space_chunk(space_id=space_id).corpus is None:
            if finish_space_build(space_id=space_id):
                transaction.on_commit(lambda: drop_retired_embedding_spaces.apply_async(
                    countdown=RETIRED_SPACE_GRACE_SECONDS + 5))
            return
    transaction.on_commit(lambda: build_embedding_space.delay(space_id))


@shared_task(name="embeddings.drop_retired_embedding_spaces", acks_late=True)
def drop_retired_embedding_spaces() -> int:
    from embeddings.services import drop_retired_spaces

    return drop_retired_spaces()


@shared_task(name="embeddings.sync_embeddings", acks_late=True)
@one_run_at_a_time("embeddings.sync_embeddings")
def sync_embeddings() -> dict | None:
    from embeddings.services import sync_embeddings as sync

    report = sync()
    return {"seen": report.objects_seen, "embedded": report.objects_embedded, "failed": report.failed_corpora}
