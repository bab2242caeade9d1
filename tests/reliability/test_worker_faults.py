"""Real worker processes lose their lives and their broker mid-run; the work still ends, each item judged once.

Our own PostgreSQL, Redis and embedding double; `celery worker` subprocesses; files
imported with `manage.py import_declarations` as an operator would. The sweeper
task is sent by hand where beat would send it once a minute.
"""
from __future__ import annotations

import re
import subprocess
import sys

import pytest
from celery import Celery

from tests.support.services import REPOSITORY_ROOT, celery_worker, manage, wait_until

pytestmark = pytest.mark.slow

# Items stuck in `processing` this long are returned to the queue by the sweeper (the minimum allowed).
STUCK_SECONDS = 10
REFERENCES = 40
KINDS = [("steel hex bolt M8", "7318150000"), ("cotton bath towel", "6302600000"), ("laptop computer", "8471300000"),
         ("ceramic dinner plate", "6911101000")]


@pytest.fixture(scope="module")
def worker_environment(own_environment):
    return {**own_environment, "STUCK_WORK_TIMEOUT_SECONDS": str(STUCK_SECONDS), "EMBEDDING_MAX_RETRIES": "0"}


@pytest.fixture(scope="module")
def knowledge_base(own_database, worker_environment, tmp_path_factory):
    path = tmp_path_factory.mktemp("references") / "references.csv"
    path.write_text("id,item_no,description,hs_code\n" + "".join(
        f"R{number},1,{KINDS[number % len(KINDS)][0]} reference {number},{KINDS[number % len(KINDS)][1]}\n"
        for number in range(REFERENCES)
    ))
    output = manage("import_declarations", "--reference", str(path), environment=worker_environment).stdout
    assert f"indexed {REFERENCES} reference entries" in output
    return path


@pytest.fixture
def workers(worker_environment, tmp_path):
    started = []

    def start(name: str):
        worker = celery_worker(environment=worker_environment, log_path=tmp_path / f"{name}.log", name=name).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def item_counts(own_postgres) -> dict[str, int]:
    with own_postgres.connect("service") as connection:
        rows = connection.execute("SELECT status, count(*) FROM verifier_declarationitem GROUP BY status").fetchall()
    return dict(rows)


def verdicts_per_item(own_postgres) -> tuple[int, int, int]:
    """(items, items judged exactly once, verdicts)

    Judged once: one verdict, written once. The one-to-one constraint alone would hide a second judgement
    (its upsert replaces the first); Verdict.writes counts every write, so an item judged twice shows.
    """
    with own_postgres.connect("service") as connection:
        return connection.execute(
            "SELECT (SELECT count(*) FROM verifier_declarationitem), "
            "(SELECT count(*) FROM verifier_declarationitem i WHERE (SELECT sum(v.writes) FROM verifier_verdict v "
            " WHERE v.item_id = i.id) = 1), (SELECT count(*) FROM verifier_verdict)"
        ).fetchone()


def import_items(tmp_path, environment: dict[str, str], *, prefix: str, count: int) -> subprocess.CompletedProcess:
    """Import `count` items whose descriptions are new (the prefix is in them): none is in the embedding cache."""
    path = tmp_path / f"{prefix}.csv"
    path.write_text("id,item_no,description,hs_code\n" + "".join(
        f"{prefix}{number},1,{KINDS[number % len(KINDS)][0]} lot {prefix}{number},{KINDS[number % len(KINDS)][1]}\n"
        for number in range(count)
    ))
    return subprocess.run([sys.executable, "manage.py", "import_declarations", str(path)], cwd=REPOSITORY_ROOT,
                          env=environment, capture_output=True, text=True, timeout=120)


def send_sweeper(broker_url: str) -> None:
    """What beat does every minute: queue the sweep task."""
    app = Celery("proof-beat", broker=broker_url)
    try:
        app.send_task("verification.sweep_stuck_items")
    finally:
        app.close()


def sweep_until_all_verified(own_postgres, broker_url: str, *, total: int, timeout: float) -> None:
    def all_verified() -> bool:
        counts = item_counts(own_postgres)
        if counts.get("verified", 0) == total:
            return True
        send_sweeper(broker_url)
        return False

    wait_until(all_verified, timeout=timeout, what=f"all {total} items to be verified", interval=2.0)


def clear_items(own_postgres) -> None:
    with own_postgres.connect("service") as connection:
        connection.execute("TRUNCATE verifier_declarationbatch CASCADE")


def test_it_verifies_every_item_exactly_once_after_a_worker_is_killed_mid_batch(
    own_postgres, own_redis, own_double, knowledge_base, worker_environment, workers, tmp_path,
):
    clear_items(own_postgres)
    total = 600
    own_double.set_latency(1.5)  # a chunk of 500 is in flight for a while: time to kill the worker inside it
    first = workers("first")
    imported = import_items(tmp_path, worker_environment, prefix="K", count=total)
    assert imported.returncode == 0, imported.stderr

    wait_until(lambda: item_counts(own_postgres).get("processing", 0) > 0, timeout=60,
               what="the worker to claim a chunk")
    first.kill()
    stranded = item_counts(own_postgres)
    assert stranded.get("processing", 0) > 0
    assert stranded.get("verified", 0) < total

    own_double.set_latency(0.0)
    workers("second")
    # Before the stuck timeout the sweeper leaves the dead worker's claim alone; after it, it returns the items.
    sweep_until_all_verified(own_postgres, own_redis.url(), total=total, timeout=120)

    items, exactly_once, verdicts = verdicts_per_item(own_postgres)
    assert items == exactly_once == verdicts == total
    assert item_counts(own_postgres) == {"verified": total}


def test_it_resumes_when_redis_is_restarted_mid_run_and_loses_no_item(
    own_postgres, own_redis, own_double, knowledge_base, worker_environment, workers, tmp_path,
):
    clear_items(own_postgres)
    own_double.set_latency(0.3)
    worker = workers("before-outage")
    first_run = import_items(tmp_path, worker_environment, prefix="A", count=400)
    assert first_run.returncode == 0, first_run.stderr
    wait_until(lambda: item_counts(own_postgres).get("verified", 0) > 0, timeout=60, what="work to start")

    own_redis.kill()  # the broker goes away with every message it held (no persistence: the worst case)
    # An import while the broker is down: the items are committed even though their message cannot be sent.
    second_run = import_items(tmp_path, worker_environment, prefix="B", count=200)
    counts = item_counts(own_postgres)
    assert sum(counts.values()) == 600, (counts, second_run.stdout, second_run.stderr)
    own_redis.start()

    if worker.process.poll() is not None:
        # Celery 5.7 with Redis can exit on "Unrecoverable error" while restoring unacknowledged messages
        # after a lost connection (kombu issues 582, 970); the process manager restarts it, as compose's
        # `restart: unless-stopped` does (test_it_restarts_a_worker_that_exits, below).
        workers("restarted-by-supervisor")
    own_double.set_latency(0.0)
    try:
        sweep_until_all_verified(own_postgres, own_redis.url(), total=600, timeout=90)
    except AssertionError as error:
        raise AssertionError(f"{error}; items by status: {item_counts(own_postgres)}; worker log:\n"
                             f"{worker.log()[-4000:]}") from None
    items, exactly_once, verdicts = verdicts_per_item(own_postgres)
    assert items == exactly_once == verdicts == 600


def test_it_restarts_a_worker_that_exits_in_the_production_compose_file():
    import yaml

    compose = yaml.safe_load((REPOSITORY_ROOT / "compose.yaml").read_text())
    for service in ("worker", "beat", "web"):
        assert compose["services"][service].get("restart") in ("unless-stopped", "always", "on-failure"), service


def test_it_resumes_when_postgresql_is_restarted_mid_run_and_loses_no_item(
    own_postgres, own_redis, own_double, knowledge_base, worker_environment, workers, tmp_path,
):
    clear_items(own_postgres)
    own_double.set_latency(0.5)
    worker = workers("through-database-restart")
    imported = import_items(tmp_path, worker_environment, prefix="P", count=600)
    assert imported.returncode == 0, imported.stderr
    wait_until(lambda: item_counts(own_postgres).get("processing", 0) > 0, timeout=60, what="work to start")

    own_postgres.stop(mode="immediate")  # as close to a crash as a clean restart allows: no checkpoint
    own_postgres.start()

    own_double.set_latency(0.0)
    try:
        sweep_until_all_verified(own_postgres, own_redis.url(), total=600, timeout=90)
    except AssertionError as error:
        raise AssertionError(f"{error}; items by status: {item_counts(own_postgres)}; worker log:\n"
                             f"{worker.log()[-4000:]}") from None
    items, exactly_once, verdicts = verdicts_per_item(own_postgres)
    assert items == exactly_once == verdicts == 600


def pool_processes(worker) -> list:
    """The worker's prefork pool children: the processes that run tasks (the parent only hands them out)."""
    import psutil

    return psutil.Process(worker.pid).children()


def test_a_message_whose_pool_process_is_killed_is_redelivered_and_takes_back_its_claim(
    own_postgres, own_redis, own_double, knowledge_base, worker_environment, workers, tmp_path,
):
    """Killed after taking its message and claiming a chunk, before committing a verdict: the message is
    delivered again (acks_late + task_reject_on_worker_lost) and finishes the work. No sweeper is sent."""
    import signal

    clear_items(own_postgres)
    total = 300
    own_double.set_latency(2.0)
    worker = workers("killed-child")
    wait_until(lambda: "ready" in worker.log(), timeout=60, what="the worker")
    imported = import_items(tmp_path, worker_environment, prefix="R", count=total)
    assert imported.returncode == 0, imported.stderr
    wait_until(lambda: item_counts(own_postgres).get("processing", 0) == total, timeout=60,
               what="a pool process to claim the chunk")
    with own_postgres.connect("service") as connection:
        claimant = connection.execute("SELECT DISTINCT claimed_by FROM verifier_declarationitem").fetchone()[0]

    for process in pool_processes(worker):
        process.send_signal(signal.SIGKILL)  # as the kernel's OOM killer does; the parent survives
    own_double.set_latency(0.0)

    try:
        wait_until(lambda: item_counts(own_postgres) == {"verified": total}, timeout=90,
                   what="the redelivered message to finish the chunk")
    except AssertionError as error:
        raise AssertionError(f"{error}; items by status: {item_counts(own_postgres)}; worker log:\n"
                             f"{worker.log()[-4000:]}") from None
    items, judged_once, verdicts = verdicts_per_item(own_postgres)
    assert items == judged_once == verdicts == total
    with own_postgres.connect("service") as connection:
        attempts = connection.execute("SELECT DISTINCT attempts FROM verifier_declarationitem").fetchall()
    assert attempts == [(1,)]  # the killed delivery's attempt is counted on every item it held
    log = worker.log()
    assert "WorkerLostError" in log
    assert f"task {claimant} was delivered again: took back {total} items" in log


def test_two_workers_share_one_batch_and_judge_each_item_once(
    own_postgres, own_redis, own_double, knowledge_base, worker_environment, workers, tmp_path,
):
    clear_items(own_postgres)
    total = 2000  # four claim chunks: four tasks, spread over both workers
    own_double.set_latency(0.3)
    first, second = workers("share-a"), workers("share-b")
    wait_until(lambda: "ready" in first.log() and "ready" in second.log(), timeout=60, what="both workers")
    imported = import_items(tmp_path, worker_environment, prefix="S", count=total)
    assert imported.returncode == 0, imported.stderr

    try:
        wait_until(lambda: item_counts(own_postgres) == {"verified": total}, timeout=120,
                   what=f"all {total} items to be verified")
    except AssertionError as error:
        raise AssertionError(f"{error}; items by status: {item_counts(own_postgres)}") from None
    items, judged_once, verdicts = verdicts_per_item(own_postgres)
    assert items == judged_once == verdicts == total
    for worker in (first, second):
        assert "verification.verify_pending_items" in worker.log() and "succeeded" in worker.log(), worker.log()[-2000:]


def test_two_beats_sending_one_periodic_job_at_once_run_it_once(
    own_postgres, own_redis, own_double, knowledge_base, worker_environment, workers,
):
    """Two beat processes each send every periodic job (celery issue 2856). Here the embedding sync is sent
    twice at the same moment to two workers while it has work: the advisory lock lets one run do it."""
    missing = 60
    with own_postgres.connect("service") as connection:
        connection.execute(
            "INSERT INTO verifier_knowledgeentry (source, hs_code, chapter, language, text, display_text, "
            "identity_key, created_at) SELECT 'nomenclature', '630260', '63', 'en', 'towel kind ' || n, "
            "'towel kind ' || n, '', now() FROM generate_series(1, %s) AS n", [missing])
    first, second = workers("beat-a"), workers("beat-b")
    wait_until(lambda: "ready" in first.log() and "ready" in second.log(), timeout=60, what="both workers")
    own_double.reset()
    own_double.set_latency(1.5)  # the first run is still embedding when the second arrives (timeout: 2 s)

    app = Celery("two-beats", broker=own_redis.url())
    try:
        app.send_task("embeddings.sync_embeddings")
        app.send_task("embeddings.sync_embeddings")
    finally:
        app.close()

    def both_finished() -> bool:
        finished = re.compile(r"embeddings\.sync_embeddings\[[^\]]+\] succeeded")
        return sum(len(finished.findall(worker.log())) for worker in (first, second)) >= 2

    wait_until(both_finished, timeout=60, what="both sync runs to finish")
    logs = first.log() + second.log()
    assert "periodic job embeddings.sync_embeddings is already running elsewhere" in logs
    assert own_double.texts_embedded == missing  # embedded once, not once per beat
