"""Embedding services on the real database with the double as endpoint: cache, storage, failures."""
from __future__ import annotations

import numpy as np
import pytest

from embeddings import services
from embeddings.cache_statistics import cache_statistics
from embeddings.errors import EmbeddingError, InvalidEmbeddingResponse
from embeddings.models import CachedEmbedding, Vector
from embeddings.selectors import nearest_neighbours
from embeddings.store import active_space, ensure_index, store_vectors, text_hash

pytestmark = pytest.mark.django_db


# --- the cache ---------------------------------------------------------------------------
def test_it_answers_a_repeated_text_from_the_cache_without_a_model_call(gateway_on_double):
    first = services.embed_queries(["cotton shirt", "steel bolt", "cotton shirt"], task="hs_code")
    assert gateway_on_double.texts_embedded == 2  # the in-batch repeat was sent once
    again = services.embed_queries(["steel bolt", "cotton shirt"], task="hs_code")
    assert gateway_on_double.texts_embedded == 2
    assert np.allclose(again, first[[1, 0]])
    assert np.allclose(np.linalg.norm(again, axis=1), 1.0, atol=1e-5)
    statistics = cache_statistics()["process"]
    assert (statistics["hits"], statistics["misses"], statistics["hit_rate"]) == (3, 2, 0.6)


@pytest.mark.parametrize("texts", ["abc", None])
def test_it_refuses_a_single_string_or_none_instead_of_embedding_its_characters(gateway_on_double, texts):
    with pytest.raises(TypeError, match="expected a list of texts"):
        services.embed_documents(texts)
    with pytest.raises(TypeError, match="expected a list of texts"):
        services.embed_queries(texts, task="hs_code")
    assert gateway_on_double.embedding_requests == 0


def test_it_keys_the_cache_on_side_and_task(gateway_on_double):
    services.embed_queries(["cotton shirt"], task="hs_code")
    services.embed_queries(["cotton shirt"], task="faq")
    services.embed_documents(["cotton shirt"])
    assert gateway_on_double.texts_embedded == 3
    assert CachedEmbedding.objects.count() == 3


# One interactive question is written with a single INSERT, a batch through binary COPY: both must keep
# the vector exactly.
@pytest.mark.parametrize("count", [1, 40])
def test_it_returns_cached_vectors_equal_to_fresh_ones_at_halfvec_precision(gateway_on_double, count):
    texts = ["wireless earphone"] + [f"cotton shirt size {size}" for size in range(count - 1)]
    fresh = services.embed_documents(texts)
    cached = services.embed_documents(texts)
    served = gateway_on_double.vectors_for(texts)
    assert gateway_on_double.texts_embedded == count and CachedEmbedding.objects.count() == count
    assert np.array_equal(fresh, cached)
    assert np.all(np.einsum("ij,ij->i", fresh, served) > 0.9999)


def test_it_stores_nothing_in_the_cache_from_a_bad_response(gateway_on_double):
    gateway_on_double.fail_next("nan")
    with pytest.raises(InvalidEmbeddingResponse):
        services.embed_documents(["wireless earphone"])
    assert CachedEmbedding.objects.count() == 0
    services.embed_documents(["wireless earphone"])
    assert CachedEmbedding.objects.count() == 1


# --- storage ----------------------------------------------------------------------------------
def test_it_stores_vectors_in_binary_and_finds_them_again(gateway_on_double):
    space = active_space()
    texts = [f"product number {number}" for number in range(50)]
    vectors = gateway_on_double.vectors_for(texts)
    store_vectors(space=space, corpus="test_products", object_ids=list(range(1, 51)), texts=texts, vectors=vectors)
    stored = Vector.objects.get(space=space, corpus="test_products", object_id=7)
    assert bytes(stored.text_hash) == text_hash("product number 6")
    assert np.allclose(np.asarray(stored.embedding, dtype=np.float32), vectors[6], atol=1e-3)
    hits = nearest_neighbours(space=space, corpus="test_products", vectors=vectors[[6, 30]], k=3)
    assert [hit[0].object_id for hit in hits] == [7, 31]
    assert hits[0][0].score > 0.999 and hits[0][1].score < 0.2



def test_exact_search_returns_the_true_nearest_in_order_as_a_full_scan_would(gateway_on_double):
    from embeddings.selectors import exact_nearest_neighbours

    space = active_space()
    texts = [f"catalogue line {number}" for number in range(300)]
    vectors = gateway_on_double.vectors_for(texts)
    store_vectors(space=space, corpus="test_products", object_ids=list(range(1, 301)), texts=texts, vectors=vectors)
    ensure_index(space, "test_products")  # there, but not to be used
    queries = gateway_on_double.vectors_for([f"question {number}" for number in range(5)])

    exact = exact_nearest_neighbours(space=space, corpus="test_products", vectors=queries, k=8)

    stored = vectors.astype(np.float16).astype(np.float32)  # what halfvec keeps
    stored /= np.linalg.norm(stored, axis=1, keepdims=True)
    truth = np.argsort(-(queries.astype(np.float16).astype(np.float32) @ stored.T), axis=1)[:, :8] + 1
    assert [[neighbour.object_id for neighbour in row] for row in exact] == truth.tolist()


def test_it_searches_several_corpora_in_their_own_indexes_and_keeps_the_k_best_of_all(gateway_on_double):
    space = active_space()
    texts = [f"item {number}" for number in range(6)]
    vectors = gateway_on_double.vectors_for(texts)
    for corpus, ids in (("test_part_a", [1, 2, 3]), ("test_part_b", [4, 5, 6])):
        store_vectors(space=space, corpus=corpus, object_ids=ids, texts=[texts[i - 1] for i in ids],
                      vectors=vectors[[i - 1 for i in ids]])
        ensure_index(space, corpus)
    # A query halfway between item 1 (corpus a) and item 5 (corpus b): both must come first, best first.
    query = vectors[0] + 0.9 * vectors[4]
    query /= np.linalg.norm(query)

    both = nearest_neighbours(space=space, corpus=["test_part_a", "test_part_b"], vectors=query[None, :], k=2)[0]
    only_a = nearest_neighbours(space=space, corpus="test_part_a", vectors=query[None, :], k=2)[0]

    assert [hit.object_id for hit in both] == [1, 5]
    assert both[0].score > both[1].score > 0.5
    assert only_a[0].object_id == 1 and only_a[1].object_id in {2, 3}

def test_it_replaces_a_vector_and_keeps_the_last_of_a_repeated_id(gateway_on_double):
    space = active_space()
    vectors = gateway_on_double.vectors_for(["old text", "new text", "newest text"])
    store_vectors(space=space, corpus="test_products", object_ids=[1], texts=["old text"], vectors=vectors[:1])
    store_vectors(space=space, corpus="test_products", object_ids=[1, 1], texts=["new text", "newest text"],
                  vectors=vectors[1:])
    stored = Vector.objects.get(space=space, corpus="test_products", object_id=1)
    assert bytes(stored.text_hash) == text_hash("newest text")
    assert np.allclose(np.asarray(stored.embedding, dtype=np.float32), vectors[2], atol=1e-3)


def test_it_refuses_vectors_of_the_wrong_shape(gateway_on_double):
    with pytest.raises(ValueError, match="expected 2x1024 vectors"):
        store_vectors(space=active_space(), corpus="test_products", object_ids=[1, 2], texts=["a", "b"],
                      vectors=np.ones((2, 384), dtype=np.float32))


def test_it_indexes_documents_and_builds_the_named_index(gateway_on_double):
    from django.db import connection

    space = services.index_documents(corpus="test_products", object_ids=[1, 2], texts=["cotton shirt", "steel bolt"])
    assert Vector.objects.filter(space=space, corpus="test_products").count() == 2
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s",
                       [f"vector_s{space.id}_test_products_hnsw"])
        (definition,) = cursor.fetchone()
    assert "hnsw" in definition and "halfvec_cosine_ops" in definition and "halfvec(1024)" in definition


@pytest.mark.parametrize("fault", ["wrong_count", "wrong_dimension", "zero_vector", "duplicate_index", "400"])
def test_it_stores_nothing_when_the_endpoint_answers_badly(gateway_on_double, fault):
    gateway_on_double.fail_next(fault)
    with pytest.raises(EmbeddingError):
        services.index_documents(corpus="test_products", object_ids=[1, 2], texts=["cotton shirt", "steel bolt"])
    assert Vector.objects.count() == 0
    assert CachedEmbedding.objects.count() == 0


def test_it_stores_nothing_when_the_endpoint_stays_down(gateway_on_double):
    gateway_on_double.fail_always("503")
    with pytest.raises(EmbeddingError):
        services.index_documents(corpus="test_products", object_ids=[1], texts=["cotton shirt"])
    assert Vector.objects.count() == 0


def test_it_refuses_ids_and_texts_of_different_lengths(gateway_on_double):
    with pytest.raises(ValueError, match="2 object ids but 1 texts"):
        services.index_documents(corpus="test_products", object_ids=[1, 2], texts=["cotton shirt"])
    assert gateway_on_double.embedding_requests == 0


def test_it_sums_cache_counts_over_processes_in_redis(gateway_on_double):
    from django.core.cache import cache

    from embeddings.cache_statistics import _redis_keys

    cache.delete_many(list(_redis_keys().values()))
    services.embed_documents(["cotton shirt", "steel bolt"])
    services.embed_documents(["cotton shirt"])
    assert cache_statistics()["all_processes"] == {"hits": 1, "misses": 2, "hit_rate": round(1 / 3, 4)}
