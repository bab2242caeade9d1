"""Embedding spaces: a model switch on a populated database, while searches keep answering; the periodic sync."""
from __future__ import annotations

import time

import pytest
from django.core.management import call_command
from django.db import connection

from devservices.embedding_double import run_embedding_double
from embeddings import services
from embeddings.client import reset_client
from embeddings.errors import EmbeddingError
from embeddings.models import EmbeddingSpace, SpaceBuildProgress, Vector
from embeddings.selectors import nearest_neighbours
from embeddings.store import active_space, text_hash

pytestmark = pytest.mark.django_db

CORPUS = "test_products"


@pytest.fixture
def populated(gateway_on_double, product_corpus):
    """30 products indexed in the active space (Qwen3, 1024 dims, served by the double)."""
    product_corpus.update({number: f"product {number}: cotton shirt size {number}" for number in range(1, 31)})
    services.index_documents(corpus=CORPUS, object_ids=list(product_corpus), texts=list(product_corpus.values()))
    return product_corpus


@pytest.fixture
def new_model_endpoint(settings):
    """A second endpoint serving another model (e5, 384 dims), configured as the new EMBEDDING_MODEL."""
    with run_embedding_double(dimensions=384, model="multilingual-e5-small-q4") as double:
        settings.EMBEDDING_BASE_URL = double.base_url
        settings.EMBEDDING_MODEL = double.model
        reset_client()
        yield double
    reset_client()


def search(space: EmbeddingSpace, text: str) -> int:
    vectors = services.embed_documents([text], space=space)
    return nearest_neighbours(space=space, corpus=CORPUS, vectors=vectors, k=1)[0][0].object_id


def build_until(space: EmbeddingSpace, *, objects_seen: int) -> None:
    """Run chunks of size 10 until this test's corpus has been walked this far (other apps' corpora are empty)."""
    while SpaceBuildProgress.objects.get(space=space, corpus=CORPUS).objects_seen < objects_seen:
        services.build_space_chunk(space_id=space.id, chunk_size=10)


def index_names(space: EmbeddingSpace) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE indexname LIKE %s", [f"vector_s{space.id}_%"])
        return [name for (name,) in cursor.fetchall()]


def test_it_switches_models_while_searches_keep_answering(populated, gateway_on_double, new_model_endpoint):
    old_space = active_space()
    new_space = services.start_space_build()
    assert new_space.state == EmbeddingSpace.State.BUILDING and new_space.dimensions == 384

    # Part of the way through the build, the old space still answers, through the old endpoint.
    build_until(new_space, objects_seen=20)
    assert active_space() == old_space
    assert search(old_space, populated[17]) == 17
    assert Vector.objects.filter(space=new_space).count() == 20

    # An edit during the build reaches both spaces.
    populated[25] = "product 25: stainless steel bolt"
    services.index_documents(corpus=CORPUS, object_ids=[25], texts=[populated[25]])
    assert bytes(Vector.objects.get(space=new_space, object_id=25).text_hash) == text_hash(populated[25])

    assert services.run_space_build(space_id=new_space.id, chunk_size=10) is True
    new_space.refresh_from_db(), old_space.refresh_from_db()
    # A search that picked the old space just before the switch still finds its vectors there...
    assert search(old_space, populated[17]) == 17
    # ...until the grace period has passed.
    assert services.drop_retired_spaces(grace_seconds=0) == 30
    assert (new_space.state, old_space.state) == (EmbeddingSpace.State.ACTIVE, EmbeddingSpace.State.RETIRED)
    assert active_space() == new_space
    stored = {row.object_id: bytes(row.text_hash) for row in Vector.objects.filter(space=new_space, corpus=CORPUS)}
    assert stored == {object_id: text_hash(text) for object_id, text in populated.items()}
    assert Vector.objects.filter(space=old_space).count() == 0
    assert index_names(old_space) == [] and f"vector_s{new_space.id}_{CORPUS}_hnsw" in index_names(new_space)
    assert search(new_space, populated[25]) == 25
    assert new_model_endpoint.requests[-1].input_type == "passage"


def test_it_resumes_a_build_from_its_saved_position_after_a_failure(populated, gateway_on_double, new_model_endpoint):
    new_space = services.start_space_build()
    build_until(new_space, objects_seen=10)
    new_model_endpoint.fail_always("503")
    with pytest.raises(EmbeddingError):
        services.build_space_chunk(space_id=new_space.id, chunk_size=10)
    progress = SpaceBuildProgress.objects.get(space=new_space, corpus=CORPUS)
    assert (progress.last_object_id, progress.objects_embedded) == (10, 10)  # the failed chunk stays pending
    assert Vector.objects.filter(space=new_space).count() == 10

    new_model_endpoint.reset()
    assert services.run_space_build(space_id=new_space.id, chunk_size=10, grace_seconds=0) is True
    assert new_model_endpoint.texts_embedded == 20  # the first ten were not embedded again
    assert Vector.objects.filter(space=new_space, corpus=CORPUS).count() == 30


def test_it_starts_no_build_when_the_active_space_is_current(populated):
    assert services.start_space_build() is None
    assert EmbeddingSpace.objects.count() == 1


def test_it_builds_a_new_space_when_only_the_dimensions_change(populated, gateway_on_double, settings):
    settings.EMBEDDING_DIMENSIONS = 256
    reset_client()
    call_command("reindex_embeddings", "--run", "--chunk-size", "8", "--grace-seconds", "0")
    space = active_space()
    assert space.dimensions == 256
    assert Vector.objects.filter(space=space).count() == 30
    assert gateway_on_double.requests[-1].dimensions == 256


def test_it_reembeds_changed_and_missing_objects_in_the_periodic_sync(populated, gateway_on_double):
    space = active_space()
    populated[3] = "product 3: wireless bluetooth earphone"
    populated[31] = "product 31: ceramic mug"
    Vector.objects.filter(space=space, object_id=5).delete()
    gateway_on_double.reset()

    report = services.sync_embeddings()

    assert (report.objects_seen, report.objects_embedded, report.failed_corpora) == (31, 3, [])
    assert gateway_on_double.texts_embedded == 2  # object 5's text was still in the cache
    stored = {row.object_id: bytes(row.text_hash) for row in Vector.objects.filter(space=space, corpus=CORPUS)}
    assert stored == {object_id: text_hash(text) for object_id, text in populated.items()}


def test_it_leaves_objects_pending_when_the_sync_cannot_embed(populated, gateway_on_double):
    populated[31] = "product 31: ceramic mug"
    gateway_on_double.fail_always("500")
    report = services.sync_embeddings()
    assert report.failed_corpora == [CORPUS]
    assert not Vector.objects.filter(object_id=31).exists()
    gateway_on_double.reset()
    assert services.sync_embeddings().objects_embedded == 1
    assert Vector.objects.filter(object_id=31).exists()


def test_it_reports_build_progress(populated, gateway_on_double, new_model_endpoint, capsys):
    new_space = services.start_space_build()
    build_until(new_space, objects_seen=10)
    call_command("reindex_embeddings", "--status")
    output = capsys.readouterr().out
    assert f"space {new_space.id}: multilingual-e5-small-q4, 384 dims" in output and "building" in output
    assert f"{CORPUS}: after id 10, 10 seen, 10 embedded" in output


def test_it_builds_and_switches_through_the_celery_task(populated, gateway_on_double, new_model_endpoint):
    from tasks.embedding import build_embedding_space, sync_embeddings

    new_space = services.start_space_build()
    build_embedding_space.apply(args=[new_space.id]).get()
    assert active_space() == new_space
    assert Vector.objects.filter(space=new_space, corpus=CORPUS).count() == 30
    populated[31] = "product 31: ceramic mug"
    assert sync_embeddings.apply().get() == {"seen": 31, "embedded": 1, "failed": []}


@pytest.mark.django_db(transaction=True)
def test_it_answers_every_search_while_a_model_switch_runs_beside_it(populated, gateway_on_double,
                                                                     new_model_endpoint):
    """Searches from another thread (its own database connection) during the whole build and the switch."""
    import threading

    from django.db import connections

    from embeddings.store import drop_indexes

    answers: list[tuple[int, int | None]] = []
    stop = threading.Event()

    def keep_searching() -> None:
        try:
            while not stop.is_set():
                space = active_space()
                answers.append((space.id, search(space, populated[17])))
        finally:
            connections.close_all()

    old_space = active_space()
    searcher = threading.Thread(target=keep_searching)
    searcher.start()
    try:
        new_space = services.start_space_build()
        assert services.run_space_build(space_id=new_space.id, chunk_size=5) is True
        deadline = time.monotonic() + 30
        while not any(space_id == new_space.id for space_id, _ in answers) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        searcher.join(timeout=30)
        for space in EmbeddingSpace.objects.all():
            drop_indexes(space)  # indexes outlive the truncation that ends a transactional test
    assert len(answers) >= 10 and {space_id for space_id, _ in answers} == {old_space.id, new_space.id}
    assert all(object_id == 17 for _, object_id in answers), answers
