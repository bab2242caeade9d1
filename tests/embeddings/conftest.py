"""Fixtures of the embedding gateway's tests: the protocol double and clients pointed at it."""
from __future__ import annotations

import pytest

from embeddings.client import CircuitBreaker, EmbeddingClient


@pytest.fixture
def double_client(embedding_double) -> EmbeddingClient:
    """A Qwen3 client against the double: short timeout, quick retries, its own circuit breaker."""
    return EmbeddingClient(
        base_url=embedding_double.base_url, model=embedding_double.model, timeout=1.0, max_retries=2,
        breaker=CircuitBreaker(threshold=5, cooldown=30.0),
    )


@pytest.fixture
def gateway_on_double(settings, embedding_double):
    """The configured endpoint is the double (Qwen3, 1024 dims); clients and cache counters start fresh."""
    from embeddings.cache_statistics import reset_process_statistics
    from embeddings.client import reset_client

    settings.EMBEDDING_BASE_URL = embedding_double.base_url
    settings.EMBEDDING_MODEL = embedding_double.model
    settings.EMBEDDING_DIMENSIONS = None
    settings.EMBEDDING_TIMEOUT_SECONDS = 1.0
    settings.EMBEDDING_MAX_RETRIES = 1
    reset_client()
    reset_process_statistics()
    yield embedding_double
    reset_client()


@pytest.fixture
def product_corpus():
    """A registered corpus backed by a dict {object_id: text}; tests edit the dict as the owning app would."""
    from embeddings.corpora import Corpus, register_corpus, unregister_corpus

    texts: dict[int, str] = {}

    def fetch_texts(after_id: int, limit: int) -> list[tuple[int, str]]:
        return [(object_id, texts[object_id]) for object_id in sorted(texts) if object_id > after_id][:limit]

    register_corpus(Corpus(name="test_products", fetch_texts=fetch_texts))
    yield texts
    unregister_corpus("test_products")
