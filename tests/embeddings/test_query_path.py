"""The per-request shortcuts of the query path, outside a test transaction (where a request runs)."""
from __future__ import annotations

import numpy as np
import pytest
from django.db import connection, transaction

from embeddings import services
from embeddings.cache_statistics import cache_statistics
from embeddings.models import CachedEmbedding, EmbeddingSpace
from embeddings.selectors import nearest_neighbours
from embeddings.store import active_space, ensure_index, forget_active_space, store_vectors

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def no_remembered_space():
    forget_active_space()
    yield
    forget_active_space()


def setting(name: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SHOW {name}")
        return cursor.fetchone()[0]


def test_it_caches_a_question_in_a_statement_of_its_own_without_leaving_durability_off(gateway_on_double):
    first = services.embed_queries(["where is my parcel"], task="faq")
    again = services.embed_queries(["where is my parcel"], task="faq")

    assert gateway_on_double.texts_embedded == 1 and CachedEmbedding.objects.count() == 1
    assert np.array_equal(first, again)
    assert setting("synchronous_commit") == "on"


def test_it_reuses_the_active_space_it_read_until_a_space_is_saved(gateway_on_double):
    space = active_space()  # created
    assert active_space() == space  # read, and remembered
    EmbeddingSpace.objects.filter(id=space.id).update(endpoint_url="http://elsewhere.invalid/v1")  # no signal
    assert active_space().endpoint_url == space.endpoint_url

    EmbeddingSpace.objects.get(id=space.id).save(update_fields=["activated_at"])  # a local change: forgotten
    assert active_space().endpoint_url == "http://elsewhere.invalid/v1"


def test_it_reads_the_active_space_afresh_inside_a_transaction(gateway_on_double):
    space = active_space()
    active_space()
    EmbeddingSpace.objects.filter(id=space.id).update(endpoint_url="http://elsewhere.invalid/v1")
    with transaction.atomic():
        assert active_space().endpoint_url == "http://elsewhere.invalid/v1"


def test_it_hands_out_copies_of_the_remembered_space(gateway_on_double):
    active_space()
    active_space().endpoint_url = "changed by a caller"
    assert active_space().endpoint_url != "changed by a caller"


def test_it_sets_ef_search_again_after_a_rolled_back_transaction_undid_it(gateway_on_double):
    space = active_space()
    texts = [f"product {number}" for number in range(1, 21)]
    vectors = gateway_on_double.vectors_for(texts)
    store_vectors(space=space, corpus="test_products", object_ids=list(range(1, 21)), texts=texts, vectors=vectors)
    ensure_index(space, "test_products")
    expected = nearest_neighbours(space=space, corpus="test_products", vectors=vectors[:2], k=3)
    assert setting("hnsw.ef_search") == "100"

    with pytest.raises(RuntimeError), transaction.atomic():
        nearest_neighbours(space=space, corpus="test_products", vectors=vectors[:2], k=3, ef_search=7)
        assert setting("hnsw.ef_search") == "7"
        raise RuntimeError("rolled back")
    assert setting("hnsw.ef_search") == "100"  # the value the rollback restored
    nearest_neighbours(space=space, corpus="test_products", vectors=vectors[:2], k=3, ef_search=7)
    assert setting("hnsw.ef_search") == "7"
    assert nearest_neighbours(space=space, corpus="test_products", vectors=vectors[:2], k=3) == expected
    assert setting("hnsw.ef_search") == "100"


def test_it_sends_pending_cache_counts_to_redis_before_reporting_them(gateway_on_double):
    from django.core.cache import cache

    from embeddings.cache_statistics import _redis_keys

    cache.delete_many(list(_redis_keys().values()))
    for _ in range(3):
        services.embed_queries(["where is my parcel"], task="faq")
    assert cache_statistics()["all_processes"] == {"hits": 2, "misses": 1, "hit_rate": round(2 / 3, 4)}
