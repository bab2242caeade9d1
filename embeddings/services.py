"""Embedding services used by every app: index documents, embed queries, build and switch embedding spaces.

Embedding calls raise embeddings.errors.EmbeddingError when the endpoint fails;
nothing is stored then, and callers keep their items pending and retry later.
Every text goes through the cache first, so a repeated text costs a lookup.
"""
from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from common.queueing import queue_on_commit

from .cache_statistics import record_cache_use
from .client import EmbeddingClient, checked_texts, get_client_for
from .corpora import get_corpus, registered_corpora, vectors_to_store
from .errors import EmbeddingError
from .models import EmbeddingSpace, SpaceBuildProgress
from .selectors import cached_embeddings, objects_needing_embedding
from .store import (
    active_space,
    building_spaces,
    configured_identity,
    ensure_index,
    retire_space_vectors,
    store_cached_embeddings,
    store_vectors,
    text_hash,
)

logger = logging.getLogger(__name__)

BUILD_CHUNK_SIZE = 256
SYNC_CHUNK_SIZE = 1000
# Index builds after a bulk load need memory (field notes: 64 MB default took >9 min for 100k x 1024).
INDEX_BUILD_MAINTENANCE_WORK_MEM = "512MB"
# How long a retired space's vectors outlive the switch: a search that read the active space just before
# the flip embeds and searches in the old space, and must still find its vectors there.
RETIRED_SPACE_GRACE_SECONDS = 120
# One build task run works this long, then queues the next run.
BUILD_SLICE_SECONDS = 60
# Tasks queued by name (tasks/embedding.py): services never import tasks/.
BUILD_TASK = "embeddings.build_embedding_space"
DROP_RETIRED_TASK = "embeddings.drop_retired_embedding_spaces"


# --- embedding through the cache ----------------------------------------------------
def client_for_space(space: EmbeddingSpace) -> EmbeddingClient:
    return get_client_for(model=space.model_name, dimensions=space.dimensions, base_url=space.endpoint_url)


def input_hash(*, side: str, prepared_input: str) -> bytes:
    """Cache key within a space: the side and the exact text sent (instruction included)."""
    return hashlib.sha256(f"{side}\n{prepared_input}".encode()).digest()


def embed_texts(
    *, space: EmbeddingSpace, texts: Sequence[str], side: str, task: str | None = None,
    client: EmbeddingClient | None = None,
) -> np.ndarray:
    """Vectors of `space` for these texts, in order: cached ones looked up, only the rest sent to the model.

    1. prepare the exact inputs (the profile writes prompts) and hash them;
    2. look all distinct hashes up in one query per thousand;
    3. embed the misses (each distinct text once) and remember them.
    Vectors are returned at halfvec precision either way, so a text gets the same vector every time.
    """
    client = client or client_for_space(space)
    prepared = client.prepared_inputs(checked_texts(texts), side=side, task=task)
    hashes = [input_hash(side=side, prepared_input=text) for text in prepared]
    distinct = list(dict.fromkeys(hashes))
    found = cached_embeddings(space=space, input_hashes=distinct)
    missing = {digest: position for position, digest in enumerate(hashes) if digest not in found}
    if missing:
        vectors = _halfvec_precision(client.embed_prepared([prepared[p] for p in missing.values()], side=side))
        if vectors.shape[1] != space.dimensions:
            raise EmbeddingError(f"client produced {vectors.shape[1]} dimensions for a {space.dimensions}-d space")
        store_cached_embeddings(space=space, input_hashes=list(missing), vectors=vectors)
        found.update(zip(missing, vectors))
    record_cache_use(hits=len(hashes) - len(missing), misses=len(missing))
    if not hashes:
        return np.zeros((0, space.dimensions), dtype=np.float32)
    matrix = np.vstack([found[digest] for digest in hashes]).astype(np.float32, copy=False)
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)


def _halfvec_precision(vectors: np.ndarray) -> np.ndarray:
    return vectors.astype(np.float16).astype(np.float32)


def embed_documents(texts: list[str], *, space: EmbeddingSpace | None = None) -> np.ndarray:
    """Document vectors of the active space (or `space`)."""
    return embed_texts(space=space or active_space(), texts=texts, side="document")


def embed_queries(texts: list[str], *, task: str, space: EmbeddingSpace | None = None) -> np.ndarray:
    """Query vectors for `task` in the active space (or `space`); search that same space with them."""
    return embed_texts(space=space or active_space(), texts=texts, side="query", task=task)


# --- the vector store ---------------------------------------------------------------
def index_documents(*, corpus: str, object_ids: Sequence[int], texts: Sequence[str]) -> EmbeddingSpace:
    """Embed these texts as documents and store them under `corpus` in the active space.

    While a new space is being built, they are written into it too, so the build never
    misses an edit made after it walked past the object. A failure there is only logged:
    the build's final catch-up pass embeds whatever is still missing.
    """
    if len(object_ids) != len(texts):
        raise ValueError(f"index_documents got {len(object_ids)} object ids but {len(texts)} texts")
    space = active_space()
    vectors = vectors_to_store(space, corpus, object_ids, embed_texts(space=space, texts=texts, side="document"))
    store_vectors(space=space, corpus=corpus, object_ids=object_ids, texts=texts, vectors=vectors)
    ensure_index(space, corpus)
    for building in building_spaces():
        try:
            building_vectors = embed_texts(space=building, texts=texts, side="document")
        except EmbeddingError as error:
            logger.warning("not written into building space %s (the build's catch-up will): %s", building.id, error)
            continue
        store_vectors(space=building, corpus=corpus, object_ids=object_ids, texts=texts,
                      vectors=vectors_to_store(building, corpus, object_ids, building_vectors))
    return space


# --- building a new space and switching to it -------------------------------------------
def start_space_build() -> EmbeddingSpace | None:
    """When the configured model/dimensions/prompts differ from the active space, start building that space.

    Returns the building space (new or already under way), or None when the active space is current.
    Safe to call any number of times; queues the build task on commit.
    """
    active = active_space()
    model, dimensions, prompt_version = configured_identity()
    if (active.model_name, active.dimensions, active.prompt_version) == (model, dimensions, prompt_version):
        return None
    with transaction.atomic():
        space, created = EmbeddingSpace.objects.select_for_update().get_or_create(
            model_name=model, dimensions=dimensions, prompt_version=prompt_version,
            defaults={"state": EmbeddingSpace.State.BUILDING, "endpoint_url": settings.EMBEDDING_BASE_URL},
        )
        if space.state == EmbeddingSpace.State.RETIRED:  # switching back to an earlier space: build it afresh
            SpaceBuildProgress.objects.filter(space=space).delete()
            space.state, space.retired_at = EmbeddingSpace.State.BUILDING, None
        space.endpoint_url = settings.EMBEDDING_BASE_URL
        space.save(update_fields=["state", "retired_at", "endpoint_url"])
        for abandoned in EmbeddingSpace.objects.filter(state=EmbeddingSpace.State.BUILDING).exclude(id=space.id):
            abandoned.state, abandoned.retired_at = EmbeddingSpace.State.RETIRED, timezone.now()
            abandoned.save(update_fields=["state", "retired_at"])
            retire_space_vectors(abandoned)
        for corpus in registered_corpora():
            SpaceBuildProgress.objects.get_or_create(space=space, corpus=corpus.name)
        queue_on_commit(BUILD_TASK, kwargs={"space_id": space.id})
    if created:
        logger.info("building embedding space %s (%s, %d dims) beside active space %s", space.id, model, dimensions,
                    active.id)
    return space


@dataclass(frozen=True)
class ChunkResult:
    corpus: str | None  # None: nothing left to claim
    objects_seen: int
    objects_embedded: int


def build_space_chunk(*, space_id: int, chunk_size: int = BUILD_CHUNK_SIZE) -> ChunkResult:
    """Embed the next chunk of one unfinished corpus into a building space, and save how far it got.

    1. claim an unfinished corpus of the space (skip ones another worker holds);
    2. fetch the next `chunk_size` objects after the saved position;
    3. embed those not already there with the same text (edits were dual-written);
    4. store them and advance the position in the same transaction.
    An embedding failure rolls all of it back: the chunk stays pending and is redone.
    """
    with transaction.atomic():
        progress = (
            SpaceBuildProgress.objects.select_for_update(skip_locked=True)
            .select_related("space")
            .filter(space_id=space_id, space__state=EmbeddingSpace.State.BUILDING, finished_at__isnull=True)
            .order_by("corpus")
            .first()
        )
        if progress is None:
            return ChunkResult(corpus=None, objects_seen=0, objects_embedded=0)
        embedded = embed_missing_objects(
            space=progress.space, corpus=progress.corpus,
            rows=get_corpus(progress.corpus).fetch_texts(progress.last_object_id, chunk_size),
        )
        progress.objects_seen += embedded.seen
        progress.objects_embedded += embedded.embedded
        if embedded.seen:
            progress.last_object_id = embedded.last_object_id
        if embedded.seen < chunk_size:
            progress.finished_at = timezone.now()
        progress.save()
        return ChunkResult(corpus=progress.corpus, objects_seen=embedded.seen, objects_embedded=embedded.embedded)


@dataclass(frozen=True)
class EmbeddedRows:
    seen: int
    embedded: int
    last_object_id: int


def embed_missing_objects(*, space: EmbeddingSpace, corpus: str, rows: list[tuple[int, str]]) -> EmbeddedRows:
    """Embed and store those of (object_id, text) whose vector in `space` is missing or from another text."""
    if not rows:
        return EmbeddedRows(seen=0, embedded=0, last_object_id=0)
    object_ids = [object_id for object_id, _ in rows]
    hashes = [text_hash(text) for _, text in rows]
    needed = objects_needing_embedding(space=space, corpus=corpus, object_ids=object_ids, text_hashes=hashes)
    todo = [(object_id, text, digest) for (object_id, text), digest in zip(rows, hashes) if object_id in needed]
    if todo:
        todo_ids = [object_id for object_id, _, _ in todo]
        vectors = vectors_to_store(space, corpus, todo_ids,
                                   embed_texts(space=space, texts=[text for _, text, _ in todo], side="document"))
        store_vectors(space=space, corpus=corpus, object_ids=todo_ids, texts=(),
                      text_hashes=[digest for _, _, digest in todo], vectors=vectors)
    return EmbeddedRows(seen=len(rows), embedded=len(todo), last_object_id=object_ids[-1])


def finish_space_build(*, space_id: int, grace_seconds: float = RETIRED_SPACE_GRACE_SECONDS) -> bool:
    """When every corpus of a building space is walked: catch up, index, flip atomically, drop the old space.

    Returns True when the space is now active. Searches keep using the old space until the flip
    commits, and the new space's indexes exist before it does. The old space's vectors are dropped
    `grace_seconds` after the flip, so a search that picked the old space just before it still answers.
    """
    space = EmbeddingSpace.objects.get(id=space_id)
    if space.state != EmbeddingSpace.State.BUILDING:
        return space.state == EmbeddingSpace.State.ACTIVE
    if SpaceBuildProgress.objects.filter(space=space, finished_at__isnull=True).exists():
        return False
    sync_space(space=space)  # objects changed since the walk passed them and were not dual-written
    with connection.cursor() as cursor:
        cursor.execute(f"SET maintenance_work_mem = '{INDEX_BUILD_MAINTENANCE_WORK_MEM}'")
        for corpus in registered_corpora():
            ensure_index(space, corpus.name)
        cursor.execute("RESET maintenance_work_mem")
    with transaction.atomic():
        spaces = {row.id: row for row in EmbeddingSpace.objects.select_for_update().filter(
            state__in=[EmbeddingSpace.State.ACTIVE, EmbeddingSpace.State.BUILDING])}
        space = spaces.get(space_id)
        if space is None or space.state != EmbeddingSpace.State.BUILDING:
            return space is not None and space.state == EmbeddingSpace.State.ACTIVE
        now = timezone.now()
        old_spaces = [row for row in spaces.values() if row.state == EmbeddingSpace.State.ACTIVE]
        for old in old_spaces:  # retire first: at most one active space at any instant (a constraint)
            old.state, old.retired_at = EmbeddingSpace.State.RETIRED, now
            old.save(update_fields=["state", "retired_at"])
        space.state, space.activated_at = EmbeddingSpace.State.ACTIVE, now
        space.save(update_fields=["state", "activated_at"])
    logger.info("embedding space %s active; retired %s", space.id, [old.id for old in old_spaces])
    drop_retired_spaces(grace_seconds=grace_seconds)
    return True


def build_space_for_a_while(*, space_id: int, seconds: float = BUILD_SLICE_SECONDS) -> bool:
    """One task run of a build: chunks for about `seconds`, then the next run is queued (progress is saved per
    chunk either way); when every corpus is walked, flip and queue dropping the old space after its grace time.
    Returns True when the space is now active."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if build_space_chunk(space_id=space_id).corpus is None:
            finished = finish_space_build(space_id=space_id)
            if finished:
                queue_on_commit(DROP_RETIRED_TASK, countdown=RETIRED_SPACE_GRACE_SECONDS + 5)
            return finished
    queue_on_commit(BUILD_TASK, kwargs={"space_id": space_id})
    return False


def drop_retired_spaces(*, grace_seconds: float = RETIRED_SPACE_GRACE_SECONDS) -> int:
    """Drop the vectors, indexes and cache of spaces retired more than `grace_seconds` ago; returns vectors dropped."""
    cutoff = timezone.now() - timezone.timedelta(seconds=grace_seconds)
    dropped = 0
    for space in EmbeddingSpace.objects.filter(state=EmbeddingSpace.State.RETIRED, retired_at__lte=cutoff):
        removed = retire_space_vectors(space)
        if removed:
            logger.info("dropped %d vectors of retired embedding space %s", removed, space.id)
        dropped += removed
    return dropped


def run_space_build(
    *, space_id: int, chunk_size: int = BUILD_CHUNK_SIZE, max_chunks: int | None = None,
    grace_seconds: float = RETIRED_SPACE_GRACE_SECONDS,
) -> bool:
    """Build a space in this process, chunk after chunk, then flip (the command's --run; tests)."""
    chunks = 0
    while max_chunks is None or chunks < max_chunks:
        if build_space_chunk(space_id=space_id, chunk_size=chunk_size).corpus is None:
            return finish_space_build(space_id=space_id, grace_seconds=grace_seconds)
        chunks += 1
    return False


# --- keeping the active space current -------------------------------------------------------
@dataclass(frozen=True)
class SyncReport:
    objects_seen: int
    objects_embedded: int
    failed_corpora: list[str]


def sync_space(*, space: EmbeddingSpace, chunk_size: int = SYNC_CHUNK_SIZE) -> SyncReport:
    """Re-embed every object of every corpus whose text changed or that is missing from `space`.

    A corpus whose embedding fails is left for the next run (its objects stay missing/stale, nothing lost).
    """
    seen = embedded = 0
    failed: list[str] = []
    for corpus in registered_corpora():
        after_id = 0
        while True:
            rows = corpus.fetch_texts(after_id, chunk_size)
            if not rows:
                break
            try:
                result = embed_missing_objects(space=space, corpus=corpus.name, rows=rows)
            except EmbeddingError as error:
                logger.warning("sync of %s in space %s stopped at id %s: %s", corpus.name, space.id, after_id, error)
                failed.append(corpus.name)
                break
            seen, embedded = seen + result.seen, embedded + result.embedded
            after_id = result.last_object_id
        if space.state == EmbeddingSpace.State.ACTIVE and embedded:
            ensure_index(space, corpus.name)
    return SyncReport(objects_seen=seen, objects_embedded=embedded, failed_corpora=failed)


def sync_embeddings() -> SyncReport:
    """The periodic pass: start (or re-queue) the build of the configured space when it differs from the
    active one, so a lost task message never stalls a build, then refresh the active space."""
    start_space_build()
    drop_retired_spaces()
    return sync_space(space=active_space())
