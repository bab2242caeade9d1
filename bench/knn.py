"""`python -m bench knn`: latency and recall@10 of pgvector HNSW search over 1024-dimension vectors.

For each size (100,000 by default; add 1,000,000 with --sizes 100000,1000000) it
measures `vector` and `halfvec` HNSW indexes at a few `hnsw.ef_search` values, and
filtered searches (one language: about half the rows; one chapter: about 1%) with
and without pgvector 0.8's iterative scans. Recall@10 is against exact search:
brute force over the same float32 vectors in numpy, cross-checked on a sample
against PostgreSQL's own exact scan (index scans disabled, unprepared statements).
The floor is that exact scan's latency, measured in the same run.

The vectors are synthetic but clustered like embeddings (unit vectors around 2,000
topic centres), generated deterministically in chunks, so the 1M corpus never has
to sit in memory. They live in a dedicated database (`bench_knn` on the same
server) kept between runs, so loading and index builds are paid once per size.

JSON last line (the default configuration: 100k, halfvec, ef_search 100, no filter):
vectors, p50_ms, p95_ms, recall_at_10, exact_p50_ms (floor), speedup (ratio), details.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np
import psycopg
from pgvector import HalfVector
from pgvector.psycopg import register_vector

from .common import Stopwatch, emit, machine_description, peak_rss_mib, percentile

DIMENSIONS = 1024
CLUSTERS = 2_000
CHAPTERS = 97  # HS chapters 01-97: a chapter filter keeps about 1% of the rows
LANGUAGES = ("zh", "en")
CHUNK_ROWS = 50_000
SEED = 20_261_123
# Text embeddings vary along few directions around a topic: a vector is its cluster centre, plus a
# point of a shared 64-dimension subspace, plus a little isotropic noise. Pure isotropic noise
# (every neighbour equally far) would be an unrealistically hard case for any ANN index.
LATENT_DIMENSIONS = 64
SUBSPACE_SPREAD = 0.6
ISOTROPIC_SPREAD = 0.15
DATABASE_NAME = "bench_knn"
DEFAULT_EF_SEARCH = 100  # embeddings.selectors.DEFAULT_EF_SEARCH
HS_SEARCH_EF = 200  # config.settings HS_SEARCH_EF default: the verifier's evidence search
K = 10
# Larger corpora are measured with halfvec only.
VECTOR_KIND_MAX_SIZE = 100_000


@dataclass(frozen=True)
class Chunk:
    ids: np.ndarray
    vectors: np.ndarray  # float32, unit length
    chapters: np.ndarray
    languages: np.ndarray


def cluster_centres() -> np.ndarray:
    centres = np.random.default_rng(SEED).standard_normal((CLUSTERS, DIMENSIONS)).astype(np.float32)
    return centres / np.linalg.norm(centres, axis=1, keepdims=True)


def latent_basis() -> np.ndarray:
    basis = np.random.default_rng([SEED, 1]).standard_normal((LATENT_DIMENSIONS, DIMENSIONS)).astype(np.float32)
    return basis / np.linalg.norm(basis, axis=1, keepdims=True) / np.sqrt(LATENT_DIMENSIONS)


def generate_chunk(centres: np.ndarray, *, index: int, rows: int, first_id: int) -> Chunk:
    """Chunk `index` of the corpus; the same arguments always give the same rows."""
    rng = np.random.default_rng([SEED, index])
    cluster = rng.integers(0, CLUSTERS, size=rows)
    latent = rng.standard_normal((rows, LATENT_DIMENSIONS)).astype(np.float32) @ latent_basis()
    noise = rng.standard_normal((rows, DIMENSIONS)).astype(np.float32) * (ISOTROPIC_SPREAD / np.sqrt(DIMENSIONS))
    vectors = centres[cluster] + SUBSPACE_SPREAD * latent + noise
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return Chunk(
        ids=np.arange(first_id, first_id + rows, dtype=np.int64),
        vectors=vectors,
        # Independent of the topic: the hard case for a filtered HNSW scan (1% of rows, scattered).
        chapters=rng.integers(1, CHAPTERS + 1, size=rows).astype(np.int16),
        languages=rng.integers(0, len(LANGUAGES), size=rows).astype(np.int16),
    )


def corpus_chunks(size: int) -> list[tuple[int, int, int]]:
    """(chunk index, rows, first id) for a corpus of `size` rows."""
    return [(number, min(CHUNK_ROWS, size - start), start + 1)
            for number, start in enumerate(range(0, size, CHUNK_ROWS))]


def generate_queries(centres: np.ndarray, count: int) -> Chunk:
    # A chunk index no corpus uses, so queries are new points from the same distribution.
    return generate_chunk(centres, index=10_000_000, rows=count, first_id=-count)


def server_connection_url() -> str:
    """The server the service uses (DATABASE_URL, else the embedded one), pointed at the benchmark database."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        from devservices.postgres import ensure_postgres

        url = ensure_postgres()
    parts = urlsplit(url)
    return parts._replace(path="/postgres").geturl()


def connect(database: str) -> psycopg.Connection:
    url = urlsplit(server_connection_url())._replace(path=f"/{database}").geturl()
    connection = psycopg.connect(url.replace("postgres://", "postgresql://", 1), autocommit=True,
                                 prepare_threshold=None)
    return connection


def ensure_database() -> None:
    with psycopg.connect(server_connection_url().replace("postgres://", "postgresql://", 1), autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]).fetchone():
            admin.execute(f'CREATE DATABASE "{DATABASE_NAME}"')


def table_name(size: int) -> str:
    return f"knn_{size}"


def ensure_corpus(connection: psycopg.Connection, size: int, *, kinds: list[str], maintenance_work_mem: str,
                  log) -> dict:
    """Load the corpus by binary COPY and build both HNSW indexes, unless a previous run already did."""
    table = table_name(size)
    timings: dict = {}
    connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
    register_vector(connection)
    exists = connection.execute("SELECT to_regclass(%s)", [table]).fetchone()[0]
    count = connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0] if exists else 0
    if count != size:
        log(f"loading {size:,} vectors into {table} (binary COPY)")
        connection.execute(f"DROP TABLE IF EXISTS {table}")
        connection.execute(
            f"CREATE TABLE {table} (id bigint PRIMARY KEY, chapter smallint NOT NULL, language smallint NOT NULL, "
            f"embedding vector({DIMENSIONS}) NOT NULL, embedding_half halfvec({DIMENSIONS}) NOT NULL)"
        )
        centres = cluster_centres()
        with Stopwatch() as watch:
            for number, rows, first_id in corpus_chunks(size):
                chunk = generate_chunk(centres, index=number, rows=rows, first_id=first_id)
                with connection.cursor().copy(
                    f"COPY {table} (id, chapter, language, embedding, embedding_half) FROM STDIN WITH (FORMAT BINARY)"
                ) as copy:
                    copy.write(binary_copy_payload(chunk))
        timings["load_seconds"] = round(watch.seconds, 1)
        timings["load_rows_per_second"] = round(size / watch.seconds)
        connection.execute(f"VACUUM ANALYZE {table}")
    # Build after loading, with room to keep the graph in memory and parallel workers (field notes).
    connection.execute(f"SET maintenance_work_mem = '{maintenance_work_mem}'")
    connection.execute("SET max_parallel_maintenance_workers = 2")
    connection.execute(f"ALTER TABLE {table} SET (parallel_workers = 2)")
    for column, operator_class, kind in [("embedding_half", "halfvec_cosine_ops", "halfvec"),
                                         ("embedding", "vector_cosine_ops", "vector")]:
        if kind not in kinds:
            continue
        index = f"{table}_{kind}_hnsw"
        if connection.execute("SELECT to_regclass(%s)", [index]).fetchone()[0] is None:
            log(f"building {index} (m=16, ef_construction=64)")
            with Stopwatch() as watch:
                connection.execute(
                    f"CREATE INDEX {index} ON {table} USING hnsw ({column} {operator_class}) "
                    "WITH (m = 16, ef_construction = 64)"
                )
            timings[f"{kind}_index_build_seconds"] = round(watch.seconds, 1)
    return timings


COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8  # signature, flags, header extension length
COPY_ROW = np.dtype([
    ("fields", ">i2"),
    ("id_length", ">i4"), ("id", ">i8"),
    ("chapter_length", ">i4"), ("chapter", ">i2"),
    ("language_length", ">i4"), ("language", ">i2"),
    # pgvector's binary formats: int16 dimensions, int16 unused, then big-endian float4 / float2 values.
    ("vector_length", ">i4"), ("vector_dimensions", ">i2"), ("vector_unused", ">i2"), ("vector", ">f4", (DIMENSIONS,)),
    ("half_length", ">i4"), ("half_dimensions", ">i2"), ("half_unused", ">i2"), ("half", ">f2", (DIMENSIONS,)),
])


def binary_copy_payload(chunk: Chunk) -> bytes:
    """A whole chunk as one COPY BINARY stream, built by numpy: ~10x faster than adapting row by row."""
    rows = np.zeros(len(chunk.ids), dtype=COPY_ROW)
    rows["fields"] = 5
    rows["id_length"], rows["id"] = 8, chunk.ids
    rows["chapter_length"], rows["chapter"] = 2, chunk.chapters
    rows["language_length"], rows["language"] = 2, chunk.languages
    rows["vector_length"], rows["vector_dimensions"], rows["vector"] = 4 + 4 * DIMENSIONS, DIMENSIONS, chunk.vectors
    rows["half_length"], rows["half_dimensions"], rows["half"] = 4 + 2 * DIMENSIONS, DIMENSIONS, chunk.vectors
    return COPY_SIGNATURE + rows.tobytes() + b"\xff\xff"


def exact_neighbours(size: int, queries: Chunk, *, mask_of=None) -> np.ndarray:
    """Top-K ids per query by brute force over the float32 corpus, streamed chunk by chunk.

    mask_of(chunk) -> bool matrix (queries x rows) restricts each query to the rows it may see.
    """
    centres = cluster_centres()
    best_scores = np.full((len(queries.ids), K), -np.inf, dtype=np.float32)
    best_ids = np.zeros((len(queries.ids), K), dtype=np.int64)
    for number, rows, first_id in corpus_chunks(size):
        chunk = generate_chunk(centres, index=number, rows=rows, first_id=first_id)
        scores = queries.vectors @ chunk.vectors.T
        if mask_of is not None:
            scores = np.where(mask_of(chunk), scores, -np.inf)
        merged_scores = np.concatenate([best_scores, scores], axis=1)
        merged_ids = np.concatenate([best_ids, np.broadcast_to(chunk.ids, scores.shape)], axis=1)
        top = np.argpartition(-merged_scores, K, axis=1)[:, :K]
        best_scores = np.take_along_axis(merged_scores, top, axis=1)
        best_ids = np.take_along_axis(merged_ids, top, axis=1)
    return best_ids


@dataclass
class Measurement:
    latencies_ms: list[float]
    recalls: list[float]
    returned: list[int]

    def summary(self) -> dict:
        return {
            "p50_ms": round(percentile(self.latencies_ms, 0.50), 2),
            "p95_ms": round(percentile(self.latencies_ms, 0.95), 2),
            "recall_at_10": round(float(np.mean(self.recalls)), 4),
            "mean_rows_returned": round(float(np.mean(self.returned)), 2),
        }


def run_queries(
    connection: psycopg.Connection, *, sql: str, parameters: list[tuple], truth: np.ndarray, settings: dict[str, str],
) -> Measurement:
    for name, value in settings.items():
        connection.execute(f"SET {name} = {value}")
    for parameter in parameters[:5]:  # warm the cache and the plan
        connection.execute(sql, parameter, prepare=False).fetchall()
    measurement = Measurement([], [], [])
    for parameter, expected in zip(parameters, truth):
        started = time.perf_counter()
        ids = [row[0] for row in connection.execute(sql, parameter, prepare=False).fetchall()]
        measurement.latencies_ms.append((time.perf_counter() - started) * 1000)
        measurement.recalls.append(len(set(ids) & set(expected.tolist())) / K)
        measurement.returned.append(len(ids))
    for name in settings:
        connection.execute(f"RESET {name}")
    return measurement


def measure_size(connection: psycopg.Connection, size: int, *, query_count: int, exact_count: int,
                 ef_values: list[int], kinds: list[str], maintenance_work_mem: str, log) -> dict:
    table = table_name(size)
    if size > VECTOR_KIND_MAX_SIZE:
        kinds = ["halfvec"]  # what the service stores; a 1M float32 graph would double the build for no use
    build = ensure_corpus(connection, size, kinds=kinds, maintenance_work_mem=maintenance_work_mem, log=log)
    memory = prewarm(connection, table=table, kinds=kinds)
    queries = generate_queries(cluster_centres(), query_count)
    log(f"exact neighbours of {query_count} queries over {size:,} vectors (numpy)")
    truth = exact_neighbours(size, queries)
    results: dict = {"vectors": size, "build": build, "memory": memory, "unfiltered": {}, "filtered": {}}
    column_of = {"halfvec": "embedding_half", "vector": "embedding"}

    def parameter(kind: str, vector: np.ndarray):
        return HalfVector(vector) if kind == "halfvec" else vector

    for kind in kinds:
        column = column_of[kind]
        sql = f"SELECT id FROM {table} ORDER BY {column} <=> %s LIMIT {K}"
        parameters = [(parameter(kind, vector),) for vector in queries.vectors]
        # The floor: PostgreSQL's exact scan, index scans disabled; its answers also cross-check numpy's.
        exact = run_queries(connection, sql=sql, parameters=parameters[:exact_count], truth=truth[:exact_count],
                            settings={"enable_indexscan": "off"})
        results["unfiltered"][f"{kind}_exact"] = exact.summary()
        # The exact scan read every vector (TOASTed, through shared buffers) and pushed the graph out: load it
        # again, or the first searches measure reads from the operating system (at 1M: p95 20 ms instead of 10).
        prewarm(connection, table=table, kinds=kinds)
        for ef_search in ef_values:
            log(f"{size:,} {kind} ef_search={ef_search}")
            measured = run_queries(connection, sql=sql, parameters=parameters, truth=truth,
                                   settings={"hnsw.ef_search": str(ef_search)})
            results["unfiltered"][f"{kind}_ef{ef_search}"] = measured.summary()

    # Filtered searches on the halfvec index (what the service uses): one language, one chapter.
    filters = {
        "language": (queries.languages, lambda chunk: queries.languages[:, None] == chunk.languages[None, :]),
        "chapter": (queries.chapters, lambda chunk: queries.chapters[:, None] == chunk.chapters[None, :]),
    }
    for name, (values, mask_of) in filters.items():
        log(f"{size:,} halfvec filtered by {name}")
        filtered_truth = exact_neighbours(size, queries, mask_of=mask_of)
        sql = f"SELECT id FROM {table} WHERE {name} = %s ORDER BY embedding_half <=> %s LIMIT {K}"
        parameters = [(int(value), HalfVector(vector)) for value, vector in zip(values, queries.vectors)]
        # As planned (the planner may prefer a scan of the few matching rows), then with the index forced,
        # which is where a filter after the HNSW scan loses rows unless the scan is iterative.
        for plan, forced in (("", {}), ("_index_forced", {"enable_seqscan": "off", "enable_bitmapscan": "off"})):
            for scan in ("off", "relaxed_order"):
                settings = {"hnsw.ef_search": str(DEFAULT_EF_SEARCH), "hnsw.iterative_scan": scan, **forced}
                measured = run_queries(connection, sql=sql, parameters=parameters, truth=filtered_truth,
                                       settings=settings)
                summary = measured.summary()
                summary["uses_hnsw_index"] = uses_hnsw_index(connection, sql=sql, parameter=parameters[0],
                                                             settings=settings)
                results["filtered"][f"{name}{plan}_iterative_{scan}"] = summary
    return results


def prewarm(connection: psycopg.Connection, *, table: str, kinds: list[str]) -> dict:
    """Load the table and its HNSW indexes into shared buffers (pg_prewarm), as a server that has been
    answering searches for a while has them; returns shared_buffers and the index sizes.

    An index larger than shared_buffers cannot stay there: each search then copies most of the pages it
    visits back from the operating system's cache (at 1M vectors and 256 MB: p50 60 ms instead of single digits).
    """
    connection.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
    sizes = {}
    for kind in kinds:
        index = f"{table}_{kind}_hnsw"
        connection.execute("SELECT pg_prewarm(%s::regclass)", [index])
        sizes[f"{kind}_index_mib"] = round(
            connection.execute("SELECT pg_relation_size(%s::regclass)", [index]).fetchone()[0] / 2**20)
    connection.execute("SELECT pg_prewarm(%s::regclass)", [table])
    return {"shared_buffers": connection.execute("SHOW shared_buffers").fetchone()[0], **sizes}


def uses_hnsw_index(connection: psycopg.Connection, *, sql: str, parameter: tuple, settings: dict[str, str]) -> bool:
    for setting, value in settings.items():
        connection.execute(f"SET {setting} = {value}")
    plan = "\n".join(row[0] for row in connection.execute("EXPLAIN " + sql, parameter, prepare=False).fetchall())
    for setting in settings:
        connection.execute(f"RESET {setting}")
    return "_hnsw" in plan


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench knn", description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--sizes", default="100000",
                        help="comma-separated corpus sizes (default 100000; 1000000 takes most of an hour to build on "
                             "2 cores: try --sizes 1000000 --kinds halfvec)")
    parser.add_argument("--queries", type=int, default=200, help="queries per configuration (default 200)")
    parser.add_argument("--exact-queries", type=int, default=20, help="queries for the exact-scan floor (default 20)")
    parser.add_argument("--ef-search", default="40,100,200,400",
                        help="hnsw.ef_search values (default 40,100,200,400)")
    parser.add_argument("--kinds", default="halfvec,vector",
                        help="index types to build and measure (default halfvec,vector; filtered searches use halfvec)")
    parser.add_argument("--maintenance-work-mem", default="auto",
                        help="for the index builds (default auto: 1GB up to 100,000 vectors, else 6GB or a quarter "
                             "of the memory if less; the 1M halfvec graph is 2.6 GB and builds fastest in memory)")
    arguments = parser.parse_args(argv)
    sizes = [int(size) for size in arguments.sizes.split(",")]
    ef_values = sorted({int(value) for value in arguments.ef_search.split(",")} | {DEFAULT_EF_SEARCH})
    kinds = ["halfvec"] + [kind for kind in arguments.kinds.split(",") if kind == "vector"]

    def log(message: str) -> None:
        print(f"[knn {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    ensure_database()
    details = []
    with connect(DATABASE_NAME) as connection:
        for size in sizes:
            details.append(measure_size(connection, size, query_count=arguments.queries,
                                        exact_count=min(arguments.exact_queries, arguments.queries),
                                        ef_values=ef_values, kinds=kinds,
                                        maintenance_work_mem=build_memory(arguments.maintenance_work_mem, size),
                                        log=log))
    default = details[0]
    headline = default["unfiltered"][f"halfvec_ef{DEFAULT_EF_SEARCH}"]
    floor = default["unfiltered"]["halfvec_exact"]
    result = {
        "benchmark": "knn",
        "machine": machine_description(),
        "vectors": default["vectors"],
        "dimensions": DIMENSIONS,
        "configuration": f"halfvec HNSW m=16 ef_construction=64, ef_search={DEFAULT_EF_SEARCH}, no filter",
        "p50_ms": headline["p50_ms"],
        "p95_ms": headline["p95_ms"],
        "recall_at_10": headline["recall_at_10"],
        "exact_p50_ms": floor["p50_ms"],
        "exact_recall_at_10": floor["recall_at_10"],
        "speedup": round(floor["p50_ms"] / headline["p50_ms"], 1),
        "sizes_run": sizes,
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "figures": knn_figures(details),
        "details": details,
    }
    emit(result, as_json_only=arguments.json)


def build_memory(setting: str, size: int) -> str:
    """maintenance_work_mem for building the index of `size` vectors ("auto": enough to build the graph in memory)."""
    if setting != "auto":
        return setting
    if size <= 100_000:
        return "1GB"
    total_mib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    return f"{min(6 * 1024, total_mib // 4)}MB"


def knn_figures(details: list[dict]) -> list[dict]:
    """Rows for the README table: each figure beside the exact-scan floor of the same size and type."""
    rows = []
    for size_result in details:
        size = size_result["vectors"]
        unfiltered = size_result["unfiltered"]
        for kind in [kind for kind in ("halfvec", "vector") if f"{kind}_exact" in unfiltered]:
            exact = unfiltered[f"{kind}_exact"]
            # The default ef_search (FAQ), and for halfvec the verifier's evidence search (HS_SEARCH_EF).
            memory = size_result.get("memory", {})
            setting = (f", index {memory[f'{kind}_index_mib']:,} MiB, shared_buffers {memory['shared_buffers']}"
                       if f"{kind}_index_mib" in memory else "")
            # Above 100,000 vectors a wider search is needed for the same recall: the row at 400 shows its price.
            wider = [HS_SEARCH_EF] + ([2 * HS_SEARCH_EF] if size > VECTOR_KIND_MAX_SIZE else [])
            for ef_search in [DEFAULT_EF_SEARCH] + (wider if kind == "halfvec" else []):
                measured = unfiltered.get(f"{kind}_ef{ef_search}")
                if measured is None:
                    continue
                rows.append({
                    "figure": f"knn {size:,} {kind} ef_search={ef_search}: p95 ms (p50 {measured['p50_ms']} ms, "
                              f"recall@10 {measured['recall_at_10']}{setting})",
                    "value": measured["p95_ms"], "floor": exact["p95_ms"],
                    "floor_name": "exact scan p95 ms", "ratio": round(exact["p95_ms"] / measured["p95_ms"], 1),
                })
        for name, plan in (("language", ""), ("chapter", "_index_forced")):
            off = size_result["filtered"][f"{name}{plan}_iterative_off"]
            relaxed = size_result["filtered"][f"{name}{plan}_iterative_relaxed_order"]
            share = "1/2 of rows" if name == "language" else "1% of rows, HNSW index forced"
            rows.append({
                "figure": f"knn {size:,} halfvec filtered by {name} ({share}), iterative scan: recall@10 "
                          f"(p50 {relaxed['p50_ms']} ms)",
                "value": relaxed["recall_at_10"], "floor": off["recall_at_10"],
                "floor_name": "recall@10 without iterative scan",
                "ratio": round(relaxed["recall_at_10"] / off["recall_at_10"], 2) if off["recall_at_10"] else None,
            })
    return rows
