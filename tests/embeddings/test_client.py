"""The embedding client against the protocol double: prompts per profile, batching, validation, faults."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

from devservices.embedding_double import run_embedding_double
from embeddings.client import CircuitBreaker, EmbeddingClient, split_into_requests
from embeddings.errors import (
    CircuitOpen,
    EmbeddingRequestRejected,
    EmbeddingUnavailable,
    InvalidEmbeddingResponse,
)
from embeddings.registry import get_task


# --- profiles -------------------------------------------------------------------------
def test_it_writes_qwen3_queries_with_the_instruction_and_documents_plain(double_client, embedding_double):
    double_client.fetch_query_vectors(["无线蓝牙耳机"], task="hs_code")
    double_client.fetch_document_vectors(["Bluetooth earphone"])
    query_request, document_request = embedding_double.requests
    assert query_request.inputs == [f"Instruct: {get_task('hs_code').instruction}\nQuery:无线蓝牙耳机"]
    assert document_request.inputs == ["Bluetooth earphone"]
    assert query_request.input_type is None and query_request.encoding_format == "base64"
    assert query_request.dimensions is None  # native size: nothing to ask for


def test_it_asks_qwen3_for_matryoshka_dimensions_when_not_native(embedding_double):
    client = EmbeddingClient(base_url=embedding_double.base_url, model=embedding_double.model, dimensions=256)
    vectors = client.fetch_document_vectors(["steel bolt"])
    assert embedding_double.requests[-1].dimensions == 256
    assert vectors.shape == (1, 256)
    assert np.allclose(vectors[0], embedding_double.vectors_for(["steel bolt"], 256)[0], atol=1e-6)


def test_it_truncates_and_renormalises_when_the_server_ignores_dimensions():
    with run_embedding_double(dimensions=1024, honour_dimensions=False) as double:
        client = EmbeddingClient(base_url=double.base_url, model=double.model, dimensions=256)
        vectors = client.fetch_document_vectors(["steel bolt"])
    full = double.vectors_for(["steel bolt"])[0]
    assert vectors.shape == (1, 256)
    assert np.isclose(np.linalg.norm(vectors[0]), 1.0, atol=1e-6)
    assert np.allclose(vectors[0], full[:256] / np.linalg.norm(full[:256]), atol=1e-6)


def test_it_stops_asking_for_dimensions_when_the_server_refuses_them_and_truncates_itself():
    with run_embedding_double(dimensions=1024, reject_dimensions=True) as double:
        client = EmbeddingClient(base_url=double.base_url, model=double.model, dimensions=128)
        first = client.fetch_document_vectors(["steel bolt"])
        second = client.fetch_document_vectors(["cotton shirt"])
        requests = list(double.requests)
    assert [request.dimensions for request in requests] == [None, None]  # the refused request is not recorded
    assert double.embedding_requests == 3
    full = double.vectors_for(["steel bolt"])[0]
    assert np.allclose(first[0], full[:128] / np.linalg.norm(full[:128]), atol=1e-6)
    assert second.shape == (1, 128)


def test_it_sends_e5_input_type_and_no_prefixes():
    with run_embedding_double(dimensions=384, model="multilingual-e5-small-q4") as double:
        client = EmbeddingClient(base_url=double.base_url, model=double.model)
        client.fetch_query_vectors(["where is my parcel"], task="faq")
        client.fetch_document_vectors(["Parcel tracking"])
        query_request, document_request = double.requests
    assert query_request.inputs == ["where is my parcel"] and query_request.input_type == "query"
    assert document_request.inputs == ["Parcel tracking"] and document_request.input_type == "passage"
    assert query_request.dimensions is None


def test_it_refuses_dimensions_a_profile_cannot_produce(embedding_double):
    with pytest.raises(ValueError, match="32-1024"):
        EmbeddingClient(base_url=embedding_double.base_url, model=embedding_double.model, dimensions=2048)


# --- batching and order -------------------------------------------------------------------
def test_it_splits_by_count_and_by_estimated_tokens():
    assert [len(r) for r in split_into_requests(["a"] * 10, max_count=4)] == [4, 4, 2]
    long_chinese = "中" * 3000
    assert [len(r) for r in split_into_requests([long_chinese] * 10, max_count=100, max_tokens=10_000)] == [3, 3, 3, 1]


def test_it_returns_vectors_in_input_order_across_concurrent_batches(embedding_double):
    client = EmbeddingClient(base_url=embedding_double.base_url, model=embedding_double.model, batch_size=7,
                             max_concurrency=4)
    texts = [f"product {number}" for number in range(100)]
    vectors = client.fetch_document_vectors(texts)
    assert len(embedding_double.requests) == 15
    assert np.allclose(vectors, embedding_double.vectors_for(texts), atol=1e-6)


def test_it_orders_by_index_when_the_server_shuffles(double_client, embedding_double):
    texts = [f"item {number}" for number in range(20)]
    embedding_double.fail_next("shuffle")
    assert np.allclose(double_client.fetch_document_vectors(texts), embedding_double.vectors_for(texts), atol=1e-6)


def test_it_names_the_position_of_a_text_that_is_not_a_string(double_client, embedding_double):
    with pytest.raises(TypeError, match="position 1 is int"):
        double_client.fetch_document_vectors(["fine", 42])
    with pytest.raises(ValueError, match="unknown embedding task 'nope'"):
        double_client.fetch_query_vectors(["fine"], task="nope")
    assert embedding_double.embedding_requests == 0


# --- invalid responses: an error, never a vector ---------------------------------------------
@pytest.mark.parametrize("fault, message", [
    ("wrong_count", "expected 3 embeddings, got 2"),
    ("wrong_dimension", "expected 1024 dimensions, got 1023"),
    ("nan", "NaN"),
    ("zero_vector", "zero norm"),
    ("duplicate_index", "missing, out of range or repeated"),
    ("bad_json", "not the expected JSON"),
])
def test_it_rejects_an_invalid_response(double_client, embedding_double, fault, message):
    embedding_double.fail_next(fault)
    with pytest.raises(InvalidEmbeddingResponse, match=message):
        double_client.fetch_document_vectors(["a", "b", "c"])
    assert embedding_double.embedding_requests == 1  # a malformed answer is not retried blindly


# --- transient faults: retried with backoff ----------------------------------------------------
@pytest.mark.parametrize("fault", ["500", "503", "429", "disconnect", "timeout"])
def test_it_retries_a_transient_fault_and_then_succeeds(double_client, embedding_double, fault):
    embedding_double.fail_next(fault, times=2)
    vectors = double_client.fetch_document_vectors(["steel bolt"])
    assert np.allclose(vectors, embedding_double.vectors_for(["steel bolt"]), atol=1e-6)
    assert embedding_double.embedding_requests == 3


def test_it_gives_up_after_its_retries_with_growing_waits(embedding_double, monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr("embeddings.client.backoff_sleep", waits.append)
    client = EmbeddingClient(base_url=embedding_double.base_url, model=embedding_double.model, max_retries=4,
                             breaker=CircuitBreaker(threshold=100))
    embedding_double.fail_always("500")
    with pytest.raises(EmbeddingUnavailable, match="after 5 attempts"):
        client.fetch_document_vectors(["steel bolt"])
    assert embedding_double.embedding_requests == 5
    # Exponential with jitter: each wait lies in [0.5, 1.5) x 0.2 x 2^attempt.
    for attempt, wait in enumerate(waits):
        assert 0.1 * 2**attempt <= wait < 0.3 * 2**attempt


def test_it_does_not_retry_a_rejected_request(double_client, embedding_double):
    embedding_double.fail_next("400", times=3)
    with pytest.raises(EmbeddingRequestRejected):
        double_client.fetch_document_vectors(["steel bolt"])
    assert embedding_double.embedding_requests == 1


def test_it_times_out_a_hanging_endpoint(embedding_double):
    client = EmbeddingClient(base_url=embedding_double.base_url, model=embedding_double.model, timeout=0.3,
                             max_retries=0)
    embedding_double.fail_next("timeout")
    started = time.monotonic()
    with pytest.raises(EmbeddingUnavailable):
        client.fetch_document_vectors(["steel bolt"])
    assert time.monotonic() - started < 2.0


# --- circuit breaker ----------------------------------------------------------------------------
def test_it_stops_calling_a_dead_endpoint_then_tries_again_after_the_cooldown(embedding_double):
    breaker = CircuitBreaker(threshold=3, cooldown=0.3)
    client = EmbeddingClient(base_url=embedding_double.base_url, model=embedding_double.model, max_retries=0,
                             breaker=breaker)
    embedding_double.fail_always("503")
    for _ in range(3):
        with pytest.raises(EmbeddingUnavailable):
            client.fetch_document_vectors(["steel bolt"])
    with pytest.raises(CircuitOpen):
        client.fetch_document_vectors(["steel bolt"])
    assert embedding_double.embedding_requests == 3  # the open circuit sent nothing

    embedding_double.reset()
    time.sleep(0.35)
    assert client.fetch_document_vectors(["steel bolt"]).shape == (1, 1024)  # the trial call goes through
    assert embedding_double.embedding_requests == 1
    assert client.fetch_document_vectors(["steel bolt"]).shape == (1, 1024)  # and closes the circuit


def test_it_reaches_the_active_identity_at_the_configured_endpoint_after_the_server_moved(settings):
    from embeddings.client import get_client, get_client_for, reset_client

    reset_client()
    try:
        configured = get_client()
        moved_from = "http://127.0.0.1:9/v1"  # where the space was built; nothing listens there now
        client = get_client_for(model=configured.model, dimensions=configured.dimensions, base_url=moved_from)
        assert client is configured
        other = get_client_for(model="Qwen/Qwen3-Embedding-0.6B", dimensions=1024, base_url=moved_from)
        assert other is not configured and str(other._openai.base_url).startswith(moved_from)
    finally:
        reset_client()


# --- processes ------------------------------------------------------------------------
def test_a_forked_process_gets_its_own_client_not_its_parents_connections(gateway_on_double):
    """A Celery worker checks the endpoint before forking its pool: children that kept the parent's client
    shared one kept-alive socket and read each other's responses (corrupt JSON, or another batch's vectors)."""
    from embeddings.client import get_client

    parent_client = get_client()
    parent_client.fetch_document_vectors(["steel bolt"])  # leaves a kept-alive connection in the parent's pool
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # the child reports through the pipe and leaves without running pytest's teardown
        try:
            child_client = get_client()
            vectors = child_client.fetch_document_vectors(["copper wire"])
            fresh = child_client is not parent_client and np.allclose(
                vectors, gateway_on_double.vectors_for(["copper wire"]), atol=1e-6)
            os.write(write_end, b"own client" if fresh else b"parent's client")
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(child, 0)
    assert os.read(read_end, 64) == b"own client"
    os.close(read_end)
    # The parent's connections were left alone.
    assert np.allclose(parent_client.fetch_document_vectors(["steel bolt"]),
                       gateway_on_double.vectors_for(["steel bolt"]), atol=1e-6)


# --- input and response shapes that once slipped through ------------------------------------------
@pytest.mark.parametrize("texts", ["abc", None, b"abc"])
def test_it_refuses_a_single_string_or_none_before_building_any_prompt(double_client, embedding_double, texts):
    with pytest.raises(TypeError, match="expected a list of texts"):
        double_client.fetch_document_vectors(texts)
    with pytest.raises(TypeError, match="expected a list of texts"):
        double_client.fetch_query_vectors(texts, task="faq")
    with pytest.raises(TypeError, match="position 0 is NoneType"):
        double_client.fetch_query_vectors([None], task="faq")  # not the text "Instruct: ...\nQuery:None"
    assert embedding_double.embedding_requests == 0


@pytest.mark.parametrize("item", [{"index": 0}, {"index": 0, "embedding": None}, {"index": 0, "embedding": 7}])
def test_a_response_item_without_an_embedding_is_an_embedding_error_the_breaker_hears(double_client, item,
                                                                                       monkeypatch):
    monkeypatch.setattr(double_client, "_request", lambda inputs, **options: [item])
    double_client.breaker = CircuitBreaker(threshold=1, cooldown=60.0)
    with pytest.raises(InvalidEmbeddingResponse):
        double_client.fetch_document_vectors(["steel bolt"])
    with pytest.raises(CircuitOpen):
        double_client.fetch_document_vectors(["steel bolt"])
