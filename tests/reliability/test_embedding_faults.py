"""The embedding endpoint fails in the middle of a verification run: nothing bad is stored, nothing is lost.

The pipeline (verifier.pipeline) runs against the real database and the protocol
double (a real HTTP server on loopback), which is told to fail in each way a real
endpoint does after the first chunk has gone through. Then the endpoint comes back
and every item ends with exactly one verdict.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
from django.db import connection

from embeddings import client as client_module
from embeddings.client import CircuitBreaker, EmbeddingClient
from verifier import pipeline, services
from verifier.models import DeclarationBatch, DeclarationItem, KnowledgeEntry, Verdict

pytestmark = pytest.mark.django_db

CHUNK = 10
DIMENSIONS = 1024  # the double serves Qwen3-Embedding-0.6B's native size
ITEMS = 30
# How the endpoint misbehaves, as the double's fault kinds: down, slow, refusing, malformed answers.
FAULTS = ["disconnect", "timeout", "500", "503", "429", "wrong_dimension", "nan", "zero_vector", "wrong_count",
          "bad_json"]


@pytest.fixture
def endpoint(own_double, settings, monkeypatch):
    """The double as the configured endpoint, behind a client like production's (short timeout and cooldown)."""
    own_double.reset()
    settings.EMBEDDING_BASE_URL = own_double.base_url
    settings.EMBEDDING_MODEL = own_double.model
    settings.EMBEDDING_DIMENSIONS = None
    client = EmbeddingClient(base_url=own_double.base_url, model=own_double.model, timeout=1.0, max_retries=1,
                             breaker=CircuitBreaker(threshold=5, cooldown=0.0))
    monkeypatch.setattr(client_module, "_default_client", client)
    yield own_double
    own_double.reset()


@pytest.fixture
def knowledge(endpoint):
    """A few pieces of evidence, indexed through the (healthy) endpoint."""
    entries = KnowledgeEntry.objects.bulk_create([
        KnowledgeEntry(source=KnowledgeEntry.Source.NOMENCLATURE, hs_code=code, chapter=code[:2], language="en",
                       text=text, display_text=text)
        for code, text in [("731815", "screws and bolts of iron or steel"), ("630260", "toilet linen of cotton"),
                           ("847130", "portable digital computers"), ("691200", "ceramic tableware")]
    ])
    services.index_knowledge_entries(entry_ids=[entry.pk for entry in entries])
    return entries


def import_items(count: int) -> DeclarationBatch:
    kinds = [("steel hex bolt", "7318150000"), ("cotton bath towel", "6302600000"), ("laptop", "8471300000")]
    lines = ["id,item_no,description,hs_code"] + [
        f"F{number},1,{kinds[number % 3][0]} number {number},{kinds[number % 3][1]}" for number in range(count)
    ]
    batch = services.create_batch(source=DeclarationBatch.Source.FILE, file_name="items.csv")
    report = services.import_declaration_file(batch=batch, stream=io.BytesIO("\n".join(lines).encode()),
                                              file_name="items.csv")
    assert report.items_created == count
    return batch


def stored_embeddings() -> list[np.ndarray]:
    """Every vector the store holds (documents and cached queries), as float arrays."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT embedding::text FROM embeddings_vector UNION ALL "
                       "SELECT embedding::text FROM embeddings_cachedembedding")
        return [np.array(text.strip("[]").split(","), dtype=np.float64) for (text,) in cursor.fetchall()]


def assert_no_bad_vector_stored(dimensions: int) -> None:
    for vector in stored_embeddings():
        assert vector.shape == (dimensions,)
        assert np.isfinite(vector).all()
        assert np.linalg.norm(vector) > 0.5


@pytest.mark.parametrize("fault", FAULTS)
def test_it_stores_no_bad_vector_and_verifies_every_item_once_the_endpoint_is_back(endpoint, knowledge, fault):
    batch = import_items(ITEMS)

    # The first chunk goes through; then the endpoint starts failing in the middle of the run.
    items, claimed_at = pipeline.claim_items(limit=CHUNK)
    assert pipeline.judge_items(items=items, claimed_at=claimed_at) == CHUNK
    endpoint.fail_always(fault)
    assert pipeline.process_pending(chunk_size=CHUNK) == 0

    assert Verdict.objects.filter(item__batch=batch).count() == CHUNK
    waiting = DeclarationItem.objects.filter(batch=batch).exclude(status=DeclarationItem.Status.VERIFIED)
    assert waiting.count() == ITEMS - CHUNK
    assert set(waiting.values_list("status", flat=True)) == {DeclarationItem.Status.PENDING}
    assert all(error for error in waiting.filter(attempts=1).values_list("last_error", flat=True))
    assert_no_bad_vector_stored(DIMENSIONS)

    endpoint.reset()
    assert pipeline.process_pending(chunk_size=CHUNK) == ITEMS - CHUNK

    assert DeclarationItem.objects.filter(batch=batch, status=DeclarationItem.Status.VERIFIED).count() == ITEMS
    assert Verdict.objects.filter(item__batch=batch).count() == ITEMS
    batch.refresh_from_db()
    assert batch.status == DeclarationBatch.Status.DONE
    assert_no_bad_vector_stored(DIMENSIONS)


def test_it_marks_an_item_failed_with_its_error_after_the_last_attempt_instead_of_retrying_forever(endpoint, knowledge):
    batch = import_items(3)
    endpoint.fail_always("500")
    for _ in range(pipeline.MAX_ATTEMPTS):
        pipeline.process_pending(chunk_size=CHUNK)
    failed = DeclarationItem.objects.filter(batch=batch, status=DeclarationItem.Status.FAILED)
    assert failed.count() == 3
    assert all("500" in error or "server" in error.lower() for error in failed.values_list("last_error", flat=True))
    assert not Verdict.objects.filter(item__batch=batch).exists()
