"""Bulk embedding adapts to a slow endpoint: token-bounded batches, a timeout that grows with the batch,
a timed-out batch sent again in halves (not whole, to a server still computing it), and loads that resume
and show their progress.

The endpoint is the protocol double (a real HTTP server) made slow in proportion to each batch, as a
busy CPU server is.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
from django.core.management import call_command

from embeddings import client as client_module
from embeddings.client import CircuitBreaker, EmbeddingClient, estimate_tokens
from embeddings.errors import EmbeddingUnavailable

TEXTS = [f"cotton bath towel lot {number}, woven, 500 g" for number in range(40)]


@pytest.fixture
def slow_endpoint(own_double):
    own_double.reset()
    yield own_double
    own_double.reset()


def client_for(double, **options) -> EmbeddingClient:
    defaults = {"timeout": 0.6, "max_retries": 0, "timeout_per_1k_tokens": 0.0,
                "breaker": CircuitBreaker(threshold=50, cooldown=0.0)}
    return EmbeddingClient(base_url=double.base_url, model=double.model, **{**defaults, **options})


def request_sizes(double) -> list[int]:
    return sorted((len(request.inputs) for request in double.requests), reverse=True)


def test_a_timed_out_batch_is_sent_again_in_halves_not_whole(slow_endpoint):
    slow_endpoint.set_latency(0.0, per_text=0.04)  # 40 texts: 1.6 s; 20: 0.8 s; 10: 0.4 s, under the 0.6 s timeout
    client = client_for(slow_endpoint)

    vectors = client.fetch_document_vectors(TEXTS)

    expected = slow_endpoint.vectors_for([client.profile.document_text(text) for text in TEXTS])
    assert np.allclose(vectors, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-5)
    # The whole batch and its halves were abandoned once each, the quarters answered: never the same 40 twice.
    sizes = request_sizes(slow_endpoint)
    assert sizes.count(40) == 1 and sizes.count(20) == 2 and sizes.count(10) == 4


def test_the_timeout_grows_with_the_batch(slow_endpoint):
    slow_endpoint.set_latency(0.0, per_text=0.04)
    tokens = sum(estimate_tokens(text) for text in TEXTS)
    # Enough seconds per 1,000 tokens that this batch's 1.6 s fit in its own timeout.
    client = client_for(slow_endpoint, timeout_per_1k_tokens=2.0 * 1000 / tokens)

    assert client.request_timeout(TEXTS) == pytest.approx(0.6 + 2.0)
    assert client.request_timeout(TEXTS[:1]) < 0.7  # a lone query still fails fast on a dead endpoint
    client.fetch_document_vectors(TEXTS)

    assert request_sizes(slow_endpoint) == [40]  # one request, answered in time


def test_batches_are_bounded_by_a_token_budget(slow_endpoint):
    long_texts = [("a long description of woven cotton towels " * 20).strip()] * 12  # ~200 tokens each
    client = client_for(slow_endpoint, max_batch_tokens=1000, timeout=5.0)

    client.fetch_document_vectors(long_texts)

    assert max(request_sizes(slow_endpoint)) * estimate_tokens(long_texts[0]) <= 1000
    assert sum(request_sizes(slow_endpoint)) == 12


def test_a_dead_endpoint_ends_the_halving_quickly(slow_endpoint):
    slow_endpoint.fail_always("timeout")
    client = client_for(slow_endpoint, timeout=0.2, breaker=CircuitBreaker(threshold=3, cooldown=60.0))

    with pytest.raises(EmbeddingUnavailable):
        client.fetch_document_vectors(TEXTS)

    assert slow_endpoint.embedding_requests <= 3  # the circuit opens: not 2 x 40 - 1 requests


# --- loads that resume and show progress ------------------------------------------------------

HEADER = "section,hscode,description,parent,level\n"


def nomenclature_csv(tmp_path, lines: int):
    rows = ["XI,63,Other made up textile articles,TOTAL,2\n", "XI,6302,Bed linen and toilet linen,63,4\n"]
    rows += [f"XI,6302{number:02d},Toilet linen of cotton kind {number},6302,6\n" for number in range(10, 10 + lines)]
    path = tmp_path / "hs.csv"
    path.write_text(HEADER + "".join(rows), encoding="utf-8")
    return path


@pytest.fixture
def double_as_endpoint(own_double, settings, monkeypatch, db):
    own_double.reset()
    settings.EMBEDDING_BASE_URL = own_double.base_url
    settings.EMBEDDING_MODEL = own_double.model
    settings.EMBEDDING_DIMENSIONS = None
    monkeypatch.setattr(client_module, "_default_client", client_for(own_double, timeout=5.0))
    yield own_double
    own_double.reset()


def test_an_interrupted_nomenclature_load_resumes_where_it_stopped_and_shows_progress(
    double_as_endpoint, tmp_path, monkeypatch,
):
    from verifier import nomenclature

    path = nomenclature_csv(tmp_path, lines=38)  # 40 evidence lines
    monkeypatch.setattr(nomenclature, "INDEX_BATCH_SIZE", 10)
    real_index = nomenclature.index_knowledge_texts
    batches = []

    def killed_after_two_batches(**arguments):
        batches.append(1)
        if len(batches) == 3:
            raise KeyboardInterrupt  # the operator's Ctrl-C, or a killed process
        return real_index(**arguments)

    monkeypatch.setattr(nomenclature, "index_knowledge_texts", killed_after_two_batches)
    first_progress = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        call_command("load_hs_nomenclature", str(path), stdout=io.StringIO(), stderr=first_progress)
    monkeypatch.setattr(nomenclature, "index_knowledge_texts", real_index)
    assert "20/40 (50%" in first_progress.getvalue()
    sent_before = double_as_endpoint.texts_embedded

    output, progress = io.StringIO(), io.StringIO()
    call_command("load_hs_nomenclature", str(path), stdout=output, stderr=progress)

    assert "20 embedded" in output.getvalue()  # only what the first run had not stored
    assert double_as_endpoint.texts_embedded - sent_before == 20
    lines = progress.getvalue().splitlines()
    assert lines[-1].startswith(f"{path}: embedding evidence [{'#' * 30}] 20/20 (100%")
    assert "10/20 (50%" in progress.getvalue()
