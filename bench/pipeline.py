"""`python -m bench pipeline [--json]`: declaration items per second from file import to stored verdict.

Against 100,000 reference declarations (KnowledgeEntry rows of source `reference` and
their vectors, HNSW-indexed), with the embedding endpoint played by the protocol
double (devservices/embedding_double.py) in a child process, so the figure measures this
service, not a model. The run:

1. prepares a dedicated database on the same PostgreSQL server, one per vector
   geometry (migrated; kept between runs, so the references are bulk-loaded by
   binary COPY and indexed once);
2. imports N items (default 5,000) from an in-memory CSV through the production
   import service, whose on-commit verification tasks go through Redis (a database
   number of its own) to a real Celery worker (one process per core), which claims
   chunks with SKIP LOCKED, embeds them (through the cache, cold), judges each chunk
   with one nearest-neighbour query and writes verdicts; the clock stops when the
   batch is done;
3. measures the floor in the same run: the raw batched kNN query alone over the same
   number of query vectors, on as many connections as worker processes (no import,
   no embedding, no vote, no writes).

Half of the items repeat a reference's wording, half are new wordings. With
`--repeat-share` (default "0,0.5": two streams measured one after the other, each
against its own floor), that share of the items repeats an earlier item of the same
stream, description and declared code, as a day's declarations repeat products: such
an item copies the earlier verdict (verifier.reuse) instead of a new search, so the
floor (every item searched) can be beaten. The double's vectors (`--geometry`): "lexical"
(default) gives texts that share words close vectors around a common direction, as a
real model does; "random" gives every text an unrelated vector, the worst case for an
HNSW search (`python -m bench geometry` compares them with the CPU model's own vectors
on the knowledge base's texts: lexical is the closer, and still the harder to search).
JSON last line: the first stream's items_per_s, items, knn_floor_items_per_s, ratio_to_floor and
repeat_share; `runs` (every stream), `figures` (a table row per stream), details.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import random
import sys
import time
from urllib.parse import urlsplit

from .common import (
    REPOSITORY_ROOT,
    CpuMeter,
    RssSampler,
    Stopwatch,
    celery_worker_command,
    child_process,
    emit,
    free_port,
    machine_description,
    peak_rss_mib,
    process_tree,
    protocol_double_command,
)

# One kept database per geometry of the double's vectors (the references' vectors differ).
DATABASE_NAMES = {"lexical": "bench_pipeline_lexical", "random": "bench_pipeline"}
DEFAULT_GEOMETRY = "lexical"
# The last run's worker and double output (the report says nothing about retries or errors).
LOG_DIRECTORY = REPOSITORY_ROOT / "var" / "bench"
LOG_FILES = ("pipeline-double.log", "pipeline-worker.log")
MODEL = "intfloat/multilingual-e5-small"
DIMENSIONS = 384
CHAPTERS = [f"{number:02d}" for number in range(1, 98) if number != 77]
REFERENCE_IDENTITY_PREFIX = "bench-reference-"
LOAD_CHUNK = 20_000
BROKER_DATABASE = 7
RUN_LOCK_KEY = 0x62656E6368  # "bench": the advisory lock that keeps runs of this benchmark apart
# Often enough for the clock (runs last tens of seconds), seldom enough to cost the machine nothing.
POLL_SECONDS = 0.2
POLL_TIMEOUT_SECONDS = 600
SEED = 20261123
WORDS = ("cotton", "steel", "wireless", "earphones", "frozen", "shrimp", "leather", "handbag", "plastic", "toys",
         "copper", "wire", "green", "tea", "rubber", "gloves", "wooden", "furniture", "glass", "bottles", "LED",
         "lamps", "women's", "knitted", "sweater", "stainless", "screws", "lithium", "battery", "printed", "books")


def reference_text(number: int) -> str:
    rng = random.Random(number)
    return " ".join(rng.choice(WORDS) for _ in range(6)) + f" model {number}"


def reference_code(number: int) -> str:
    """A subheading shaped like the nomenclature's: 13 headings per chapter, 5 subheadings per heading
    (HS 2022: 97 chapters, 1,228 headings, 5,612 subheadings). Any heading of 00-99 would make some 9,600
    headings, eight times HS's, and the heading prototypes' step (one score per heading) as much dearer."""
    rng = random.Random(-number)
    return rng.choice(CHAPTERS) + f"{rng.randrange(1, 14):02d}{rng.randrange(1, 6)}0"


def server_url(database: str) -> str:
    url = os.environ.get("DATABASE_URL")
    if not url:
        from devservices.postgres import ensure_postgres

        url = ensure_postgres()
    return urlsplit(url)._replace(path=f"/{database}").geturl()


def ensure_database(name: str) -> None:
    import psycopg

    admin_url = server_url("postgres").replace("postgres://", "postgresql://", 1)
    with psycopg.connect(admin_url, autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            admin.execute(f'CREATE DATABASE "{name}"')


def ensure_references(count: int, *, geometry: str, log) -> dict:
    """Reference entries 1..count and their vectors in the active space, with the HNSW index; reused when present."""
    from django.db import connection

    from devservices.embedding_double import VectorTable
    from embeddings.models import Vector
    from embeddings.store import active_space, ensure_index, index_name, store_vectors, text_hash
    from verifier.models import KNOWLEDGE_CORPUS, KnowledgeEntry

    space = active_space()
    timings: dict = {}
    entries = KnowledgeEntry.objects.filter(source=KnowledgeEntry.Source.REFERENCE,
                                            identity_key__startswith=REFERENCE_IDENTITY_PREFIX)
    vectors = Vector.objects.filter(space=space, corpus=KNOWLEDGE_CORPUS)
    from verifier.models import HsCode

    if (entries.count() == count and vectors.count() == count and HsCode.objects.exists()
            and stored_vector_is_current(space=space, geometry=geometry)
            and entries.filter(pk=1, hs_code=reference_code(1)).exists()):
        return {"references_reused": True}
    log(f"loading {count:,} references (binary COPY, {geometry} vectors) into {connection.settings_dict['NAME']}")
    assert_benchmark_database()
    with connection.cursor() as cursor:
        cursor.execute(f'DROP INDEX IF EXISTS "{index_name(space.id, KNOWLEDGE_CORPUS)}"')
        cursor.execute("TRUNCATE embeddings_vector, verifier_knowledgeentry, verifier_hscode CASCADE")
    table = VectorTable(DIMENSIONS, geometry=geometry)
    with Stopwatch() as watch:
        for start in range(1, count + 1, LOAD_CHUNK):
            numbers = range(start, min(count, start + LOAD_CHUNK - 1) + 1)
            texts = [reference_text(number) for number in numbers]
            with connection.cursor() as cursor, cursor.cursor.copy(
                "COPY verifier_knowledgeentry (id, source, hs_code, chapter, language, text, display_text, "
                "identity_key, created_at) FROM STDIN"
            ) as copy:
                for number, text in zip(numbers, texts):
                    code = reference_code(number)
                    copy.write_row((number, "reference", code, code[:2], "en", text, text,
                                    f"{REFERENCE_IDENTITY_PREFIX}{number}", "2026-01-01T00:00:00Z"))
            store_vectors(space=space, corpus=KNOWLEDGE_CORPUS, object_ids=list(numbers),
                          text_hashes=[text_hash(text) for text in texts], texts=(),
                          vectors=table.vectors(texts, DIMENSIONS))
        codes = sorted({reference_code(number) for number in range(1, count + 2)})
        with connection.cursor() as cursor, cursor.cursor.copy(
            "COPY verifier_hscode (code, language, description, level, parent_code, section) FROM STDIN"
        ) as copy:
            for code in codes:
                copy.write_row((code, "en", f"subheading {code}", 6, code[:4], ""))
    timings["load_seconds"] = round(watch.seconds, 1)
    with connection.cursor() as cursor:
        cursor.execute("SELECT setval(pg_get_serial_sequence('verifier_knowledgeentry', 'id'), %s)", [count])
        cursor.execute("VACUUM ANALYZE embeddings_vector")
        # Field notes: build after loading, with memory for the graph and parallel workers.
        cursor.execute("SET maintenance_work_mem = '1GB'")
        cursor.execute("SET max_parallel_maintenance_workers = 2")
    log("building the HNSW index (m=16, ef_construction=64)")
    with Stopwatch() as watch:
        ensure_index(space, KNOWLEDGE_CORPUS)
    timings["index_build_seconds"] = round(watch.seconds, 1)
    return timings


def stored_vector_is_current(*, space, geometry: str) -> bool:
    """Whether reference 1's stored vector is what the double would serve now (its geometry may have changed)."""
    import psycopg
    from django.db import connection

    from devservices.embedding_double import VectorTable
    from embeddings.store import halfvec_from_binary
    from verifier.models import KNOWLEDGE_CORPUS

    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute("SELECT embedding FROM embeddings_vector WHERE space_id = %s AND corpus = %s AND object_id = 1",
                       [space.id, KNOWLEDGE_CORPUS], binary=True)
        row = cursor.fetchone()
    expected = VectorTable(DIMENSIONS, geometry=geometry).vectors([reference_text(1)], DIMENSIONS)[0]
    return row is not None and bool(abs(halfvec_from_binary(bytes(row[0])) - expected).max() < 1e-2)


def item_csv(count: int, *, references: int, nonce: str, repeat_share: float = 0.0) -> bytes:
    """Half the items repeat a reference's wording and code; half are new wordings.

    With `repeat_share`, that share of the items (chosen at random) repeat an earlier item of the stream
    (its description and declared code, under a new declaration id), as a stream of declarations repeats
    products; the rest are made as above.
    """
    rng = random.Random(nonce)
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["id", "item_no", "description", "hs_code", "quantity", "unit", "value", "currency", "origin"])
    earlier: list[tuple[str, str]] = []
    for number in range(count):
        reference = rng.randrange(1, references + 1)
        if earlier and rng.random() < repeat_share:
            description, code = earlier[rng.randrange(len(earlier))]
        elif number % 2 == 0:
            description, code = reference_text(reference), reference_code(reference)
        else:
            description, code = f"{reference_text(reference)} variant {nonce}-{number}", reference_code(reference + 1)
        earlier.append((description, code))
        writer.writerow([f"BENCH-{nonce}-{number // 10}", number % 10 + 1, description, code,
                         rng.randrange(1, 500), "pcs", rng.randrange(10, 90_000), "USD", "CN"])
    return text.getvalue().encode("utf-8")


def assert_benchmark_database() -> None:
    """Refuse to truncate anything but the benchmark's own database (Django set up elsewhere would point at
    live data)."""
    from django.db import connection

    if connection.settings_dict["NAME"] not in DATABASE_NAMES.values():
        raise SystemExit(f"refusing to run: Django is connected to {connection.settings_dict['NAME']!r}, "
                         f"not to one of {sorted(DATABASE_NAMES.values())}")


def reset_work() -> None:
    """Forget the previous run's items and the query-side cache, so every run starts cold."""
    from django.db import connection

    assert_benchmark_database()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE verifier_verdict, verifier_review, verifier_importrowerror, verifier_declarationitem, "
                       "verifier_declarationbatch, embeddings_cachedembedding CASCADE")


def knn_floor(count: int, *, concurrency: int, geometry: str) -> float:
    """Raw batched kNN queries per second: the same number of query vectors, the same chunk size, k and
    ef_search as the evidence search, as many connections as worker processes, nothing else (no import,
    embedding, vote or writes)."""
    from concurrent.futures import ThreadPoolExecutor

    from django.conf import settings
    from django.db import connection

    from devservices.embedding_double import VectorTable
    from embeddings.selectors import nearest_neighbours
    from embeddings.store import active_space
    from verifier.models import KNOWLEDGE_CORPORA
    from verifier.pipeline import CLAIM_CHUNK_ITEMS
    from verifier.recommendation import DEFAULT_K

    space = active_space()
    texts = [f"{reference_text(number)} floor" for number in range(1, count + 1)]
    vectors = VectorTable(DIMENSIONS, geometry=geometry).vectors(texts, DIMENSIONS)

    def search(start: int) -> None:
        try:
            nearest_neighbours(space=space, corpus=KNOWLEDGE_CORPORA, vectors=vectors[start:start + CLAIM_CHUNK_ITEMS],
                               k=DEFAULT_K, ef_search=settings.HS_SEARCH_EF)
        finally:
            connection.close()  # each thread has its own connection

    with Stopwatch() as watch, ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(search, range(0, count, CLAIM_CHUNK_ITEMS)))
    return count / watch.seconds


def wait_for_exclusive_run(*, log) -> None:
    """One run at a time: two runs share the kept database and would truncate each other's items."""
    from django.db import connection

    assert_benchmark_database()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [RUN_LOCK_KEY])
        if not cursor.fetchone()[0]:
            log("another pipeline benchmark is running on this server; waiting for it to finish")
            # Session-level: held until this process's connection closes at exit.
            cursor.execute("SELECT pg_advisory_lock(%s)", [RUN_LOCK_KEY])


def wait_for_workers(app, *, count: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(app.control.ping(timeout=0.5) or []) >= count:
            return
    raise SystemExit(f"the Celery worker did not answer within {timeout:.0f}s")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench pipeline", description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--items", type=int, default=5_000)
    parser.add_argument("--references", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=os.cpu_count() or 2,
                        help="worker processes of the Celery worker (default: one per core)")
    parser.add_argument("--repeat-share", default="0,0.5",
                        help="share of items that repeat an earlier item of the stream; comma-separated values are "
                             "measured one after the other, each against its own floor (default 0,0.5)")
    parser.add_argument("--geometry", choices=sorted(DATABASE_NAMES), default=DEFAULT_GEOMETRY,
                        help="the double's vectors: lexical (like a real model's) or random (the worst case)")
    arguments = parser.parse_args(argv)
    repeat_shares = [float(share) for share in arguments.repeat_share.split(",")]

    def log(message: str) -> None:
        if not arguments.json:
            print(message, file=sys.stderr, flush=True)

    from devservices.redis import ensure_redis

    port = free_port()
    database = DATABASE_NAMES[arguments.geometry]
    ensure_database(database)
    environment = {
        "DATABASE_URL": server_url(database),
        "EMBEDDING_BASE_URL": f"http://127.0.0.1:{port}/v1",
        "EMBEDDING_MODEL": MODEL,
        # A Redis database of its own: no other worker on this machine takes the benchmark's tasks.
        "CELERY_BROKER_URL": ensure_redis().rsplit("/", 1)[0] + f"/{BROKER_DATABASE}",
        "CELERY_TASK_ALWAYS_EAGER": "false",
    }
    os.environ.update(environment)
    os.environ.pop("EMBEDDING_DIMENSIONS", None)
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from embeddings.models import EmbeddingSpace

    double = protocol_double_command(port=port, dimensions=DIMENSIONS,
                                     extra=["--model", MODEL, "--geometry", arguments.geometry])
    LOG_DIRECTORY.mkdir(parents=True, exist_ok=True)
    for name in LOG_FILES:
        (LOG_DIRECTORY / name).unlink(missing_ok=True)
    with child_process(double, log_path=LOG_DIRECTORY / LOG_FILES[0],
                       port=port, what="embedding double") as double_process:
        wait_for_exclusive_run(log=log)
        call_command("migrate", verbosity=0)
        # The kept database remembers the space's endpoint; this run's double listens on a new port.
        EmbeddingSpace.objects.filter(model_name=MODEL).update(endpoint_url=environment["EMBEDDING_BASE_URL"])
        setup = ensure_references(arguments.references, geometry=arguments.geometry, log=log)
        runs = []
        for share in repeat_shares:
            run = measure_run(arguments, repeat_share=share, log=log, double_pid=double_process.pid)
            log(f"repeat share {share}: {run['items_per_s']} items/s, floor {run['knn_floor_items_per_s']}/s "
                f"(ratio {run['ratio_to_floor']})")
            runs.append(run)
    first = runs[0]
    emit({
        **{key: first[key] for key in ("items_per_s", "items", "seconds", "import_seconds", "knn_floor_items_per_s",
                                       "ratio_to_floor", "repeat_share")},
        "references": arguments.references,
        "hs_search_ef": settings.HS_SEARCH_EF,
        "vectors": arguments.geometry,
        "runs": runs,
        "figures": [{
            "figure": f"pipeline: items/s from import to verdict (protocol double, {arguments.geometry} vectors, "
                      f"`HS_SEARCH_EF` {settings.HS_SEARCH_EF}, "
                      + (f"{run['repeat_share']:.0%} of items repeat an earlier one" if run["repeat_share"]
                         else "no repeated items")
                      + "; CPU ms per item: " + cpu_split(run) + ")",
            "value": run["items_per_s"], "floor": run["knn_floor_items_per_s"],
            "floor_name": "raw batched kNN items/s (every item searched)", "ratio": run["ratio_to_floor"],
        } for run in runs],
        "details": {"setup": setup, "worker_concurrency": arguments.concurrency,
                    "bench_peak_rss_mib": round(peak_rss_mib()),
                    "machine": machine_description(), "embedding": "protocol double (child process)"},
    }, as_json_only=arguments.json)


def cpu_split(run: dict) -> str:
    spent, floor = run["cpu_ms_per_item"], run["floor_cpu_ms_per_item"]
    return (f"PostgreSQL {spent['postgres']:.1f} (floor {floor['postgres']:.1f}), worker {spent['worker']:.1f}, "
            f"double {spent['double']:.1f}, import {spent['import_and_polling']:.1f}")


def postgres_cpu_seconds() -> float:
    """CPU seconds of the whole PostgreSQL server: the postmaster, its live children and those that exited
    (a backend whose connection closed is counted through its parent's children times). The server is shared:
    run on an otherwise quiet machine."""
    import psutil
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        postmaster = psutil.Process(psutil.Process(cursor.fetchone()[0]).ppid())
    times = postmaster.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in postmaster.children():
        with contextlib.suppress(psutil.Error):
            child_times = child.cpu_times()
            total += child_times.user + child_times.system
    return total


def measure_run(arguments, *, repeat_share: float, log, double_pid: int) -> dict:
    """One stream of items from import to verdicts by a fresh worker, then the kNN floor over as many vectors.

    CPU per item is counted per process group (the worker and its pool, the double, the PostgreSQL server, this
    process: the import and the polling), so the figure says where the time goes.
    """
    from django.db.models import Count

    from config.celery import app
    from verifier.models import DeclarationBatch, Verdict
    from verifier.services import create_batch, import_declaration_file

    reset_work()
    app.control.purge()
    nonce = f"{time.time_ns():x}"
    data = item_csv(arguments.items, references=arguments.references, nonce=nonce, repeat_share=repeat_share)
    with child_process(celery_worker_command(concurrency=arguments.concurrency, hostname=f"bench-{nonce}@%h",
                                             loglevel="INFO"),
                       what="celery worker", log_path=LOG_DIRECTORY / LOG_FILES[1]) as worker:
        wait_for_workers(app, count=1)
        log(f"importing {arguments.items:,} items ({repeat_share:.0%} repeats); "
            f"{arguments.concurrency} worker processes verify them")
        meter = CpuMeter({"worker": lambda: process_tree(worker.pid), "double": lambda: [double_pid],
                          "import_and_polling": lambda: [os.getpid()]})
        postgres_started = postgres_cpu_seconds()
        with RssSampler(worker.pid) as worker_memory, meter, Stopwatch() as watch:
            with Stopwatch() as import_watch:
                batch = create_batch(source=DeclarationBatch.Source.FILE, file_name="bench-pipeline.csv")
                report = import_declaration_file(batch=batch, stream=io.BytesIO(data),
                                                 file_name="bench-pipeline.csv")
            deadline = time.monotonic() + POLL_TIMEOUT_SECONDS
            while True:
                batch.refresh_from_db()
                if batch.status != DeclarationBatch.Status.PROCESSING or time.monotonic() > deadline:
                    break
                time.sleep(POLL_SECONDS)
    postgres_ms = (postgres_cpu_seconds() - postgres_started) * 1000
    verdicts = Verdict.objects.filter(item__batch=batch).count()
    if verdicts != report.items_created or batch.status != DeclarationBatch.Status.DONE:
        raise SystemExit(f"only {verdicts} of {report.items_created} items got a verdict (batch {batch.status})")
    log(f"measuring the floor: raw batched kNN over the same number of vectors, {arguments.concurrency} connections")
    floor_meter = CpuMeter({"search_client": lambda: [os.getpid()]})
    postgres_started = postgres_cpu_seconds()
    with floor_meter:
        floor = knn_floor(arguments.items, concurrency=arguments.concurrency, geometry=arguments.geometry)
    floor_postgres_ms = (postgres_cpu_seconds() - postgres_started) * 1000
    tiers = dict(Verdict.objects.filter(item__batch=batch).values_list("tier").annotate(n=Count("id"))
                 .values_list("tier", "n"))
    # Items whose judgement (description, declared code) was new to the stream: the rest could copy a verdict.
    distinct = Verdict.objects.filter(item__batch=batch).values("judgement_key").distinct().count()
    items_per_s = verdicts / watch.seconds
    return {
        "repeat_share": repeat_share,
        "items_per_s": round(items_per_s),
        "items": verdicts,
        "seconds": round(watch.seconds, 2),
        "import_seconds": round(import_watch.seconds, 2),
        "knn_floor_items_per_s": round(floor),
        "ratio_to_floor": round(items_per_s / floor, 3),
        "tiers": tiers,
        "distinct_judgements": distinct,
        # Per item, over the whole stream; the floor's the same way (its database part is the search itself).
        "cpu_ms_per_item": {name: round(spent / verdicts, 2)
                            for name, spent in {**meter.spent_ms, "postgres": postgres_ms}.items()},
        "floor_cpu_ms_per_item": {name: round(spent / arguments.items, 2)
                                  for name, spent in {**floor_meter.spent_ms, "postgres": floor_postgres_ms}.items()},
        # Other work on the machine slows both figures; the ratio to the floor is the comparable one.
        "load_average_1min_at_end": round(os.getloadavg()[0], 1),
        "worker_peak_rss_mib": round(worker_memory.peak_mib),
    }
