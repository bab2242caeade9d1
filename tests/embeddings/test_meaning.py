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
from embeddings.profiles import profile_for

PRODUCTS = [
    "Bluetooth earphone without cable",
    "Cotton T-shirt for men",
    "Stainless steel bolts M8",
    "Frozen peeled shrimp",
    "Laptop computer with 15 inch screen",
    "Red wine in bottles",
]
# Chinese descriptions and the English product each one describes (cross-lingual, as declarations are).
GOLDEN = {
    "无线蓝牙耳机": "Bluetooth earphone without cable",
    "男士纯棉T恤": "Cotton T-shirt for men",
    "不锈钢螺栓": "Stainless steel bolts M8",
    "冷冻去壳虾仁": "Frozen peeled shrimp",
    "笔记本电脑": "Laptop computer with 15 inch screen",
    "瓶装红葡萄酒": "Red wine in bottles",
}


@pytest.fixture(scope="module")
def real_client() -> EmbeddingClient:
    return EmbeddingClient(base_url=settings.EMBEDDING_BASE_URL, model=settings.EMBEDDING_MODEL,
                           dimensions=settings.EMBEDDING_DIMENSIONS, timeout=60.0, max_retries=2)


def test_it_finds_the_product_each_chinese_description_names(real_client):
    documents = real_client.embed_documents(PRODUCTS)
    queries = real_client.embed_queries(list(GOLDEN), task="hs_code")
    nearest = np.argmax(queries @ documents.T, axis=1)
    assert [PRODUCTS[index] for index in nearest] == list(GOLDEN.values())


def test_it_scores_a_paraphrase_above_an_unrelated_text(real_client):
    vectors = real_client.embed_documents([
        "How do I track my parcel?", "Where can I see where my package is?", "What is the VAT rate on wine?",
    ])
    assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2])


def test_it_serves_the_dimension_of_the_configured_profile(real_client):
    vector = real_client.embed_documents(["health check"])
    assert vector.shape == (1, profile_for(settings.EMBEDDING_MODEL).output_dimensions(settings.EMBEDDING_DIMENSIONS))
    assert np.isclose(np.linalg.norm(vector[0]), 1.0, atol=1e-5)
