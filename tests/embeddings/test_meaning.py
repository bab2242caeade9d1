"""Golden test of meaning against the configured endpoint (the real CPU model by default).

Served vectors have differed from reference implementations (truncation, padding); these known
texts and their nearest neighbours catch that on any new endpoint. Run it after pointing
EMBEDDING_BASE_URL at a new server.
"""
from __future__ import annotations

import numpy as np
import pytest
from django.conf import settings

from embeddings.client import EmbeddingClient
from embeddings.golden import check_golden_neighbours
from embeddings.profiles import profile_for
from verifier.embedding_registration import PRODUCT_DESCRIPTIONS as GOLDEN
from verifier.embedding_registration import PRODUCTS


@pytest.fixture(scope="module")
def real_client() -> EmbeddingClient:
    return EmbeddingClient(base_url=settings.EMBEDDING_BASE_URL, model=settings.EMBEDDING_MODEL,
                           dimensions=settings.EMBEDDING_DIMENSIONS, timeout=60.0, max_retries=2)


def test_it_finds_the_product_each_chinese_description_names(real_client):
    documents = real_client.fetch_document_vectors(PRODUCTS)
    queries = real_client.fetch_query_vectors(list(GOLDEN), task="hs_code")
    nearest = np.argmax(queries @ documents.T, axis=1)
    assert [PRODUCTS[index] for index in nearest] == list(GOLDEN.values())


def test_it_scores_a_paraphrase_above_an_unrelated_text(real_client):
    vectors = real_client.fetch_document_vectors([
        "How do I track my parcel?", "Where can I see where my package is?", "What is the VAT rate on wine?",
    ])
    assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2])


def test_it_serves_the_dimension_of_the_configured_profile(real_client):
    vector = real_client.fetch_document_vectors(["health check"])
    assert vector.shape == (1, profile_for(settings.EMBEDDING_MODEL).output_dimensions(settings.EMBEDDING_DIMENSIONS))
    assert np.isclose(np.linalg.norm(vector[0]), 1.0, atol=1e-5)


def test_the_golden_check_passes_on_the_configured_model(real_client):
    report = check_golden_neighbours(real_client)
    assert report.passed, report.misses
    assert report.checked == 10


def test_the_golden_check_fails_an_endpoint_whose_vectors_mean_nothing(embedding_double):
    """The protocol double serves the right shape with no meaning, as a broken server would."""
    report = check_golden_neighbours(EmbeddingClient(base_url=embedding_double.base_url, model=embedding_double.model))
    assert not report.passed
    assert len(report.misses) >= 5  # ranked at random: most known neighbours are missed (deterministically here)
