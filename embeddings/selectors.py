"""Reads from the vector store: nearest neighbours for a batch of query vectors in one query."""
from __future__ import annotations

import logging
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import psycopg
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, QuerySet

from .binary_parameters import binary_parameter_cursor, halfvec_binary_rows
from .cache_statistics import cache_statistics
from .client import get_client
from .errors import DimensionMismatch, EmbeddingError
from .models import EmbeddingSpace, SpaceBuildProgress, Vector
from .store import halfvec_from_binary, text_hash

logger = logging.getLogger(__name__)

DEFAULT_EF_SEARCH = 100
CACHE_LOOKUP_CHUNK = 1000


@dataclass(frozen=True)
class Neighbour:
    object_id: int
    score: float  # cosine similarity, 1 = same direction


def nearest_neighbours(
    *, space: EmbeddingSpace, corpus: str | Sequence[str], vectors: np.ndarray, k: int,
    ef_search: int = DEFAULT_EF_SEARCH,
) -> list[list[Neighbour]]:
    """The k nearest stored objects of `corpus` for each query vector, best first; one SQL query for the batch.

    Uses the partial HNSW index of (space, corpus) (embeddings.store.ensure_index). The query vectors
    travel as one binary halfvec[] parameter and are unnested once, in a MATERIALIZED CTE: cast inside the
    LATERAL subquery they were re-parsed at every index node visited (measured, 3,000 vectors: 120-170 ms
    per query there, 4.5 ms here). Several corpora: each is searched in its own index (k each) and the
    k best of them are kept.
    """
    if len(vectors) == 0:
        return []
    sql, parameters = nearest_neighbours_statement(space=space, corpus=corpus, vectors=vectors, k=k)
    _set_ef_search(max(int(ef_search), k))
    with binary_parameter_cursor() as cursor:
        cursor.execute(sql, parameters, prepare=False)
        rows = cursor.fetchall()
    results: list[list[Neighbour]] = [[] for _ in range(len(vectors))]
    for position, object_id, score in rows:
        results[position - 1].append(Neighbour(object_id=object_id, score=float(score)))
    return results


# The hnsw.ef_search each open connection was last given outside a transaction (keyed by the psycopg connection,
# so a new connection starts unknown).
_session_ef_search: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _set_ef_search(value: int) -> None:
    """SET hnsw.ef_search for this session, skipping the round trip when the connection already has it.

    Only a SET made outside a transaction is remembered: one made inside may be rolled back (and the value
    it replaced come back), so there it is always sent and the memory dropped.
    """
    connection.ensure_connection()
    raw = connection.connection
    outside_transaction = not connection.in_atomic_block and connection.get_autocommit()
    if outside_transaction and _session_ef_search.get(raw) == value:
        return
    _session_ef_search.pop(raw, None)
    with connection.cursor() as cursor:
        cursor.execute(f"SET hnsw.ef_search = {value}")
    if outside_transaction:
        _session_ef_search[raw] = value


def exact_nearest_neighbours(
    *, space: EmbeddingSpace, corpus: str | Sequence[str], vectors: np.ndarray, k: int,
) -> list[list[Neighbour]]:
    """The true k nearest, as nearest_neighbours returns them, found by reading every vector (no index).

    The yardstick of the HNSW search (evaluate_hs --recall); seconds per batch, never on a hot path.
    """
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_indexscan = off")  # the planner scans and sorts instead
        return nearest_neighbours(space=space, corpus=corpus, vectors=vectors, k=k, ef_search=k)


def nearest_neighbours_statement(
    *, space: EmbeddingSpace, corpus: str | Sequence[str], vectors: np.ndarray, k: int,
) -> tuple[str, list]:
    """The SQL and parameters of nearest_neighbours, for a binary_parameter_cursor (and for EXPLAIN)."""
    dims = space.dimensions
    corpora = [corpus] if isinstance(corpus, str) else list(corpus)
    # One branch per corpus, each with its corpus as a literal so that the planner matches its partial index.
    branches = " UNION ALL ".join(
        f"""(SELECT v.object_id, v.embedding::halfvec({dims}) <=> queries.embedding AS distance
             FROM embeddings_vector v
             WHERE v.space_id = %s AND v.corpus = %s
             ORDER BY v.embedding::halfvec({dims}) <=> queries.embedding
             LIMIT %s)"""
        for _ in corpora
    )
    nearest = branches if len(corpora) == 1 else (
        f"(SELECT found.object_id, found.distance FROM ({branches}) AS found ORDER BY found.distance LIMIT %s)"
    )
    sql = f"""
        WITH queries AS MATERIALIZED (
            SELECT position, embedding::halfvec({dims}) AS embedding
            FROM unnest(%b::halfvec[]) WITH ORDINALITY AS incoming(embedding, position)
        )
        SELECT queries.position, hit.object_id, 1 - hit.distance
        FROM queries CROSS JOIN LATERAL {nearest} AS hit
        ORDER BY queries.position, hit.distance
    """
    parameters = [halfvec_binary_rows(vectors), *[value for name in corpora for value in (space.id, name, k)],
                  *([k] if len(corpora) > 1 else [])]
    return sql, parameters


def stored_vectors(
    *, space: EmbeddingSpace, corpus: str | Sequence[str], object_ids: Sequence[int],
) -> tuple[list[int], np.ndarray]:
    """The stored vectors of these objects in `space` (any of the corpora), read in binary: (ids, matrix).

    Uses the unique index of constraint `vector_one_per_object_unique` (space_id, corpus, object_id).
    Objects without a vector in the space are left out.
    """
    corpora = [corpus] if isinstance(corpus, str) else list(corpus)
    if not object_ids:
        return [], np.zeros((0, space.dimensions), dtype=np.float32)
    return _read_vectors(
        space=space, condition="AND object_id = ANY(%s)", parameters=[space.id, corpora, list(object_ids)],
    )


def corpus_vectors(
    *, space: EmbeddingSpace, corpus: str | Sequence[str], live_objects: QuerySet | None = None,
) -> tuple[list[int], np.ndarray]:
    """Every stored vector of `corpus` in `space`, read in binary: (object ids, matrix).

    `live_objects`: a queryset of the owning model; only vectors of objects it holds are read (a vector can
    outlive its object until the next sync). Uses the unique index of `vector_one_per_object_unique`.
    """
    corpora = [corpus] if isinstance(corpus, str) else list(corpus)
    live_sql, live_parameters = _live_objects_clause(live_objects)
    return _read_vectors(space=space, condition=live_sql, parameters=[space.id, corpora, *live_parameters])


def _read_vectors(*, space: EmbeddingSpace, condition: str, parameters: list) -> tuple[list[int], np.ndarray]:
    """(object ids, matrix) of the space's vectors of some corpora, narrowed by `condition`, read in binary."""
    ids: list[int] = []
    rows: list[np.ndarray] = []
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:  # Django's own cursors are text-only
        cursor.execute(
            f"SELECT object_id, embedding FROM embeddings_vector WHERE space_id = %s AND corpus = ANY(%s) {condition}",
            parameters, prepare=False, binary=True,
        )
        for object_id, embedding in cursor.fetchall():
            ids.append(object_id)
            rows.append(_halfvec_to_numpy(embedding))
    matrix = np.stack(rows) if rows else np.zeros((0, space.dimensions), dtype=np.float32)
    return ids, matrix


def corpus_fingerprint(
    *, space: EmbeddingSpace, corpus: str | Sequence[str], live_objects: QuerySet | None = None,
) -> tuple[str, int]:
    """An order-independent digest of the corpus's vectors in `space` (object ids and text hashes), and their count:
    it changes whenever a vector is added, removed or re-embedded from another text. `live_objects` as in
    corpus_vectors."""
    corpora = [corpus] if isinstance(corpus, str) else list(corpus)
    live_sql, live_parameters = _live_objects_clause(live_objects)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT count(*),
                   coalesce(sum(object_id), 0),
                   coalesce(sum(('x' || substr(encode(text_hash, 'hex'), 1, 15))::bit(60)::bigint::numeric), 0)
            FROM embeddings_vector
            WHERE space_id = %s AND corpus = ANY(%s){live_sql}
            """,
            [space.id, corpora, *live_parameters],
        )
        count, id_sum, hash_sum = cursor.fetchone()
    return f"{count}:{id_sum}:{hash_sum}", int(count)


def _live_objects_clause(live_objects: QuerySet | None) -> tuple[str, tuple]:
    if live_objects is None:
        return "", ()
    sql, parameters = live_objects.values("pk").query.sql_with_params()
    return f" AND object_id IN ({sql})", tuple(parameters)


def has_vector(*, space: EmbeddingSpace, corpus: str | Sequence[str]) -> Exists:
    """A filter for a queryset of the corpus's owning model: the object has a vector in `space` (negate with ~)."""
    corpora = [corpus] if isinstance(corpus, str) else list(corpus)
    return Exists(Vector.objects.filter(space=space, corpus__in=corpora, object_id=OuterRef("pk")))


def objects_without_current_vector(
    *, space: EmbeddingSpace, corpus: str | Sequence[str], texts: Mapping[int, str],
) -> list[int]:
    """Of these objects ({object_id: current text}), those with no vector in `space` (in any of the corpora) or
    one embedded from another text, in id order. Uses the unique index of `vector_one_per_object_unique`."""
    if not texts:
        return []
    corpora = [corpus] if isinstance(corpus, str) else list(corpus)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT object_id, text_hash FROM embeddings_vector WHERE space_id = %s AND corpus = ANY(%s) "
            "AND object_id = ANY(%s)",
            [space.id, corpora, list(texts)],
        )
        stored = {object_id: bytes(digest) for object_id, digest in cursor.fetchall()}
    return sorted(object_id for object_id, text in texts.items() if stored.get(object_id) != text_hash(text))


def cached_embeddings(*, space: EmbeddingSpace, input_hashes: list[bytes]) -> dict[bytes, np.ndarray]:
    """Vectors already computed in this space for these input hashes, read in binary.

    Uses the unique index of constraint `cached_embedding_input_unique` (space_id, input_hash).
    """
    found: dict[bytes, np.ndarray] = {}
    if not input_hashes:
        return found
    connection.ensure_connection()
    # Binary results: halfvec arrives as its wire format and is decoded by numpy, not parsed from text.
    with psycopg.Cursor(connection.connection) as cursor:  # Django's own (client-side) cursors are text-only
        for start in range(0, len(input_hashes), CACHE_LOOKUP_CHUNK):
            cursor.execute(
                "SELECT input_hash, embedding FROM embeddings_cachedembedding "
                "WHERE space_id = %s AND input_hash = ANY(%s)",
                [space.id, input_hashes[start:start + CACHE_LOOKUP_CHUNK]],
                prepare=False, binary=True,
            )
            for digest, embedding in cursor.fetchall():
                found[bytes(digest)] = _halfvec_to_numpy(embedding)
    return found


def _halfvec_to_numpy(value) -> np.ndarray:
    if isinstance(value, (bytes, memoryview)):
        return halfvec_from_binary(bytes(value))
    return np.asarray(value.to_numpy() if hasattr(value, "to_numpy") else value, dtype=np.float32)


def objects_needing_embedding(
    *, space: EmbeddingSpace, corpus: str, object_ids: list[int], text_hashes: list[bytes]
) -> set[int]:
    """Of these objects, those with no vector in `space` or one embedded from another text.

    Uses the unique index of constraint `vector_one_per_object_unique` (space_id, corpus, object_id).
    """
    if not object_ids:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT incoming.object_id
            FROM unnest(%s::bigint[], %s::bytea[]) AS incoming(object_id, text_hash)
            LEFT JOIN embeddings_vector stored
              ON stored.space_id = %s AND stored.corpus = %s AND stored.object_id = incoming.object_id
            WHERE stored.id IS NULL OR stored.text_hash <> incoming.text_hash
            """,
            [object_ids, text_hashes, space.id, corpus],
        )
        return {object_id for (object_id,) in cursor.fetchall()}


@dataclass(frozen=True)
class CorpusBuildStatus:
    corpus: str
    last_object_id: int
    objects_seen: int
    objects_embedded: int
    finished: bool


@dataclass(frozen=True)
class SpaceStatus:
    space_id: int
    model_name: str
    dimensions: int
    prompt_version: str
    state: str
    vectors: int
    corpora: list[CorpusBuildStatus]


def space_statuses() -> list[SpaceStatus]:
    """Every active or building space with its vector count and build progress, for operators."""
    spaces = EmbeddingSpace.objects.exclude(state=EmbeddingSpace.State.RETIRED).order_by("id")
    statuses = []
    for space in spaces:
        progress = SpaceBuildProgress.objects.filter(space=space).order_by("corpus")
        statuses.append(SpaceStatus(
            space_id=space.id, model_name=space.model_name, dimensions=space.dimensions,
            prompt_version=space.prompt_version, state=space.state,
            vectors=Vector.objects.filter(space=space).count(),
            corpora=[CorpusBuildStatus(
                corpus=row.corpus, last_object_id=row.last_object_id, objects_seen=row.objects_seen,
                objects_embedded=row.objects_embedded, finished=row.finished_at is not None,
            ) for row in progress],
        ))
    return statuses


def endpoint_health() -> dict:
    """Reachability, served model and dimension of the configured endpoint, and whether they fit the spaces.

    `matches_active_space`: the endpoint serves the active space's model at its dimension (queries work;
    with no space yet, the configured one, which becomes active on first use).
    `matches_configured_space`: it can produce the configured dimension (indexing and re-indexing work).
    `status`: "ok"; "degraded" when the endpoint cannot be reached (the service runs, embedding work waits
    as pending items); "misconfigured" when it answers with vectors the spaces cannot use.
    """
    client = get_client()
    report: dict = {
        "endpoint": {"url": client.base_url, "reachable": False, "model": None, "dimensions": None, "error": None},
        "configured": {"model": client.model, "dimensions": client.dimensions,
                       "prompt_version": client.profile.prompt_version},
        "active_space": None,
        "building_spaces": [],
        "matches_active_space": False,
        "matches_configured_space": False,
        "cache": cache_statistics(),
    }
    try:
        info = client.probe()
    except EmbeddingError as error:
        report["endpoint"]["error"] = str(error)
    else:
        report["endpoint"].update(reachable=True, model=info.model_name, dimensions=info.dimensions)
        report["matches_configured_space"] = client.can_produce(info.dimensions)
    active = EmbeddingSpace.objects.filter(state=EmbeddingSpace.State.ACTIVE).first()
    if active is not None:
        report["active_space"] = {"id": active.id, "model": active.model_name, "dimensions": active.dimensions,
                                  "prompt_version": active.prompt_version}
        same_identity = (active.model_name, active.dimensions, active.prompt_version) == (
            client.model, client.dimensions, client.profile.prompt_version)
        report["matches_active_space"] = same_identity and report["matches_configured_space"]
    else:
        # No space yet: the configured one becomes active on first use.
        report["matches_active_space"] = report["matches_configured_space"]
    if not report["endpoint"]["reachable"]:
        report["status"] = "degraded"
    elif report["matches_active_space"] or report["matches_configured_space"]:
        report["status"] = "ok"
    else:
        report["status"] = "misconfigured"
    report["building_spaces"] = [
        {"id": status.space_id, "model": status.model_name, "dimensions": status.dimensions,
         "corpora_done": sum(corpus.finished for corpus in status.corpora), "corpora": len(status.corpora)}
        for status in space_statuses() if status.state == EmbeddingSpace.State.BUILDING
    ]
    return report


def check_worker_endpoint() -> None:
    """Refuse to start a worker whose endpoint cannot produce the dimension it would write.

    The configured space is the active one, or the one being built to replace it. An unreachable
    endpoint is only logged (it may be restarting; calls retry), but one that answers with vectors
    of another width would fill the store with vectors no search can use.
    """
    client = get_client()
    try:
        info = client.probe()
    except EmbeddingError as error:
        logger.warning("embedding endpoint %s not reachable at worker start: %s", client.base_url, error)
        return
    if client.can_produce(info.dimensions):
        return
    active = EmbeddingSpace.objects.filter(state=EmbeddingSpace.State.ACTIVE).first()
    expected = (f"the active space ({active.model_name}, {active.dimensions} dimensions)"
                if active is not None and (active.model_name, active.dimensions) == (client.model, client.dimensions)
                else f"the configured space ({client.model}, {client.dimensions} dimensions)")
    raise DimensionMismatch(
        f"embedding endpoint {client.base_url} serves {info.model_name} with {info.dimensions}-dimensional vectors, "
        f"but {expected} needs {client.dimensions}; point EMBEDDING_BASE_URL at the right server or set "
        f"EMBEDDING_MODEL/EMBEDDING_DIMENSIONS to what it serves (a changed space is then rebuilt in the background)"
    )


def corpus_version(*, space: EmbeddingSpace, corpus: str | Sequence[str]) -> int:
    """A number that grows whenever any vector of these corpora in `space` is written or deleted (0 if never).

    Kept by triggers on the vector table (embeddings.models.CorpusVersion), visible once the change is
    committed. One indexed query.
    """
    corpora = [corpus] if isinstance(corpus, str) else list(corpus)
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(version), 0) FROM embeddings_corpusversion "
                       "WHERE space_id = %s AND corpus = ANY(%s)", [space.id, corpora])
        return int(cursor.fetchone()[0])
