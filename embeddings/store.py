"""Writes to the vector store: the active space, storing vectors, and their HNSW indexes.

Vectors travel to PostgreSQL as one binary COPY stream built by numpy (halfvec's
binary format), never as text literals: about ten times faster (see field notes).
"""
from __future__ import annotations

import copy
import hashlib
from collections.abc import Sequence

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from common.recent_reads import RecentReads

from .binary_parameters import binary_parameter_cursor, halfvec_binary_rows
from .client import get_client
from .models import EmbeddingSpace

# HNSW build parameters for every (space, corpus) index: pgvector's defaults, written down.
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64

_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)


def text_hash(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def index_name(space_id: int, corpus: str) -> str:
    return f"vector_s{space_id}_{corpus}_hnsw"[:63]


def configured_identity() -> tuple[str, int, str]:
    """(model, dimensions, prompt version) of the space the configured endpoint writes."""
    client = get_client()
    return client.model, client.dimensions, client.profile.prompt_version


# How long a process reuses the active space it read (every match asks). Safe because a retired space keeps its
# vectors for RETIRED_SPACE_GRACE_SECONDS (embeddings.services), far longer: a search that read the old space
# still finds them there.
ACTIVE_SPACE_TTL_SECONDS = 5.0
_recent_active_space = RecentReads(ACTIVE_SPACE_TTL_SECONDS)
_recent_active_space.forget_when_changed(EmbeddingSpace, name="embeddings.active_space")
# The next active_space() reads the database (tests that switch endpoints call it).
forget_active_space = _recent_active_space.forget


def active_space() -> EmbeddingSpace:
    """The space searches use. Created (and activated) from the configured endpoint when none exists yet.

    Read at most once per ACTIVE_SPACE_TTL_SECONDS per process outside transactions (common.recent_reads).
    """
    space = _recent_active_space.get(
        "active", lambda: EmbeddingSpace.objects.filter(state=EmbeddingSpace.State.ACTIVE).first())
    if space is not None:
        return copy.copy(space)  # a copy: a caller may change its own instance
    _recent_active_space.forget()  # never remember that there was none
    model, dimensions, prompt_version = configured_identity()
    with transaction.atomic():
        space, _ = EmbeddingSpace.objects.select_for_update().get_or_create(
            model_name=model, dimensions=dimensions, prompt_version=prompt_version,
            defaults={"endpoint_url": settings.EMBEDDING_BASE_URL},
        )
        if not EmbeddingSpace.objects.filter(state=EmbeddingSpace.State.ACTIVE).exists():
            space.state, space.activated_at = EmbeddingSpace.State.ACTIVE, timezone.now()
            space.save(update_fields=["state", "activated_at"])
    return space


def building_spaces() -> list[EmbeddingSpace]:
    """Spaces being built beside the active one; index_documents writes into them too."""
    return list(EmbeddingSpace.objects.filter(state=EmbeddingSpace.State.BUILDING))


def ensure_index(space: EmbeddingSpace, corpus: str) -> None:
    """The partial HNSW index that nearest-neighbour searches of (space, corpus) use.

    Used by: embeddings.selectors.nearest_neighbours, through its ORDER BY on
    `embedding::halfvec(D) <=> query` with `space_id = S AND corpus = C`.
    """
    name = index_name(space.id, corpus)
    with connection.cursor() as cursor:
        # Look first: CREATE INDEX takes a lock that blocks writers to the table even when the index exists.
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [f'"{name}"'])
        if cursor.fetchone()[0]:
            return
        # Inside a transaction that wrote vectors, deferred foreign-key checks must fire before CREATE INDEX.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(
            f'CREATE INDEX IF NOT EXISTS "{name}" ON embeddings_vector '
            f"USING hnsw ((embedding::halfvec({space.dimensions})) halfvec_cosine_ops) "
            f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION}) "
            f"WHERE space_id = %s AND corpus = %s",
            [space.id, corpus],
        )
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")  # back to Django's INITIALLY DEFERRED


def drop_indexes(space: EmbeddingSpace) -> None:
    """Drop every HNSW index of this space (all corpora), found by name prefix in the catalogue."""
    prefix = f"vector_s{space.id}_"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'embeddings_vector' AND starts_with(indexname, %s)",
            [prefix],
        )
        for (name,) in cursor.fetchall():
            cursor.execute(f'DROP INDEX IF EXISTS "{name}"')


def store_vectors(
    *, space: EmbeddingSpace, corpus: str, object_ids: Sequence[int], texts: Sequence[str], vectors: np.ndarray,
    text_hashes: Sequence[bytes] | None = None,
) -> None:
    """Insert or replace the vectors of these objects: one binary COPY into a temporary table, one upsert.

    An object id given twice keeps its last vector. `text_hashes` may be passed instead of `texts`.
    """
    if len(object_ids) == 0:
        return
    if vectors.shape != (len(object_ids), space.dimensions):
        raise ValueError(f"expected {len(object_ids)}x{space.dimensions} vectors, got {vectors.shape}")
    hashes = list(text_hashes) if text_hashes is not None else [text_hash(text) for text in texts]
    if len(hashes) != len(object_ids):
        raise ValueError(f"expected {len(object_ids)} texts (or text hashes), got {len(hashes)}")
    last_position = {object_id: position for position, object_id in enumerate(object_ids)}
    if len(last_position) != len(object_ids):
        positions = sorted(last_position.values())
        object_ids = [object_ids[position] for position in positions]
        hashes = [hashes[position] for position in positions]
        vectors = vectors[positions]
    stream = copy_stream(hashes=hashes, vectors=vectors, object_ids=object_ids)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE incoming_vector (object_id bigint, text_hash bytea, embedding halfvec) "
            "ON COMMIT DROP"
        )
        copy_sql = "COPY incoming_vector (object_id, text_hash, embedding) FROM STDIN (FORMAT BINARY)"
        with cursor.cursor.copy(copy_sql) as copy:
            copy.write(stream)
        cursor.execute(
            """
            INSERT INTO embeddings_vector (space_id, corpus, object_id, text_hash, embedding)
            SELECT %s, %s, object_id, text_hash, embedding FROM incoming_vector
            ON CONFLICT (space_id, corpus, object_id)
            DO UPDATE SET text_hash = EXCLUDED.text_hash, embedding = EXCLUDED.embedding
            """,
            [space.id, corpus],
        )
        # Dropped here too: inside a caller's transaction ON COMMIT DROP would leave it for the next call.
        cursor.execute("DROP TABLE incoming_vector")


def copy_stream(*, hashes: Sequence[bytes], vectors: np.ndarray, object_ids: Sequence[int] | None = None) -> bytes:
    """PostgreSQL binary COPY rows ([bigint,] bytea(32), halfvec), built in one numpy pass."""
    if any(len(digest) != 32 for digest in hashes):
        raise ValueError("every hash must be 32 bytes (sha256)")
    dimensions = vectors.shape[1]
    fields = [("field_count", ">i2")]
    if object_ids is not None:
        fields += [("id_length", ">i4"), ("object_id", ">i8")]
    fields += [
        ("hash_length", ">i4"), ("hash", "S32"),
        ("vector_length", ">i4"), ("dimensions", ">i2"), ("unused", ">i2"), ("values", ">f2", (dimensions,)),
    ]
    rows = np.zeros(len(hashes), dtype=np.dtype(fields))
    rows["field_count"] = 2 if object_ids is None else 3
    if object_ids is not None:
        rows["id_length"], rows["object_id"] = 8, np.asarray(object_ids, dtype=np.int64)
    rows["hash_length"], rows["hash"] = 32, np.frombuffer(b"".join(hashes), dtype="S32")
    rows["vector_length"], rows["dimensions"] = 4 + 2 * dimensions, dimensions
    rows["values"] = vectors
    return _COPY_HEADER + rows.tobytes() + _COPY_TRAILER


# Up to this many rows a cache write is one INSERT; more go through binary COPY into a temporary table.
SMALL_CACHE_WRITE_ROWS = 32


def store_cached_embeddings(*, space: EmbeddingSpace, input_hashes: Sequence[bytes], vectors: np.ndarray) -> None:
    """Remember computed vectors by input hash (first writer wins; a text's vector never changes in a space)."""
    if len(input_hashes) == 0:
        return
    own_transaction = not connection.in_atomic_block and connection.get_autocommit()
    if len(input_hashes) <= SMALL_CACHE_WRITE_ROWS:
        # An interactive question: one statement, no temporary table (creating one writes the catalog), its
        # vectors sent in binary. On its own it is its own transaction (no BEGIN/COMMIT round trips); a cache
        # write lost in a crash costs one recomputation, so that transaction does not wait for the WAL flush
        # (about 10 ms): set_config(..., true) lasts until its commit. Never inside a caller's transaction,
        # whose other writes must stay durable.
        durability = ", (SELECT set_config('synchronous_commit', 'off', true)) AS durability" if own_transaction else ""
        with binary_parameter_cursor() as cursor:
            cursor.execute(
                f"""
                INSERT INTO embeddings_cachedembedding (space_id, input_hash, embedding, created_at)
                SELECT DISTINCT ON (input_hash) %s, input_hash, embedding, now()
                FROM unnest(%s::bytea[], %b::halfvec[]) AS incoming (input_hash, embedding){durability}
                ON CONFLICT (space_id, input_hash) DO NOTHING
                """,
                [space.id, [bytes(digest) for digest in input_hashes], halfvec_binary_rows(vectors)],
                prepare=False,
            )
        return
    with transaction.atomic(), connection.cursor() as cursor:
        if own_transaction:
            # As above, for a bulk write in its own transaction.
            cursor.execute("SET LOCAL synchronous_commit = off")
        stream = copy_stream(hashes=input_hashes, vectors=vectors)
        cursor.execute(
            "CREATE TEMPORARY TABLE incoming_cached (input_hash bytea, embedding halfvec) ON COMMIT DROP"
        )
        with cursor.cursor.copy("COPY incoming_cached (input_hash, embedding) FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(stream)
        cursor.execute(
            """
            INSERT INTO embeddings_cachedembedding (space_id, input_hash, embedding, created_at)
            SELECT DISTINCT ON (input_hash) %s, input_hash, embedding, now() FROM incoming_cached
            ON CONFLICT (space_id, input_hash) DO NOTHING
            """,
            [space.id],
        )
        cursor.execute("DROP TABLE incoming_cached")


def retire_space_vectors(space: EmbeddingSpace) -> int:
    """Drop a retired space's indexes, vectors and cached vectors; the space row stays as history."""
    drop_indexes(space)
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM embeddings_vector WHERE space_id = %s", [space.id])
        deleted = cursor.rowcount
        cursor.execute("DELETE FROM embeddings_cachedembedding WHERE space_id = %s", [space.id])
    return deleted


def halfvec_from_binary(data: bytes) -> np.ndarray:
    """A halfvec in PostgreSQL's binary format (int16 dimensions, int16 unused, big-endian float16s)."""
    dimensions = int.from_bytes(data[:2], "big")
    return np.frombuffer(data, dtype=">f2", count=dimensions, offset=4).astype(np.float32)


def delete_vectors(*, corpus: str, object_ids: Sequence[int]) -> None:
    """Remove these objects' vectors from every space (the object was deleted or deactivated)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM embeddings_vector WHERE corpus = %s AND object_id = ANY(%s)", [corpus, list(object_ids)]
        )


def drop_corpus(*, corpus: str) -> int:
    """Remove a corpus from every space: its vectors and its HNSW index in each; returns the vectors removed."""
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM embeddings_vector WHERE corpus = %s", [corpus])
        removed = cursor.rowcount
        for space_id in EmbeddingSpace.objects.values_list("id", flat=True):
            cursor.execute(f'DROP INDEX IF EXISTS "{index_name(space_id, corpus)}"')
    return removed


def vector_literal(vector: np.ndarray) -> str:
    """pgvector's text form, for query parameters (a handful per query; bulk writes use copy_stream)."""
    return "[" + ",".join(f"{value:.6g}" for value in vector.tolist()) + "]"
