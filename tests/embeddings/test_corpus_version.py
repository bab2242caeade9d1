"""The vectors' change counter: every write to a corpus's vectors, however it is made, moves its version."""
from __future__ import annotations

import numpy as np
import pytest
from django.db import connection

from embeddings.models import EmbeddingSpace
from embeddings.selectors import corpus_version
from embeddings.store import delete_vectors, store_vectors, text_hash

pytestmark = pytest.mark.django_db


@pytest.fixture
def space():
    return EmbeddingSpace.objects.create(model_name="test-model", dimensions=4, prompt_version="1",
                                         state=EmbeddingSpace.State.ACTIVE)


def store(space, corpus: str, object_ids: list[int]) -> None:
    vectors = np.eye(4, dtype=np.float32)[: len(object_ids)]
    store_vectors(space=space, corpus=corpus, object_ids=object_ids,
                  text_hashes=[text_hash(f"text {object_id}") for object_id in object_ids], texts=(),
                  vectors=vectors)


def test_it_grows_with_every_insert_update_and_delete_of_the_corpus_and_only_of_it(space):
    assert corpus_version(space=space, corpus="letters") == 0

    store(space, "letters", [1, 2])
    after_insert = corpus_version(space=space, corpus="letters")
    store(space, "letters", [1])  # re-embedded: an update of an existing vector
    after_update = corpus_version(space=space, corpus="letters")
    store(space, "numbers", [1, 2, 3])
    after_other_corpus = corpus_version(space=space, corpus="letters")
    delete_vectors(corpus="letters", object_ids=[2])
    after_delete = corpus_version(space=space, corpus="letters")

    assert 0 < after_insert < after_update == after_other_corpus < after_delete
    assert corpus_version(space=space, corpus=["letters", "numbers"]) >= after_delete


def test_a_truncate_moves_every_version(space):
    store(space, "letters", [1])
    before = corpus_version(space=space, corpus="letters")
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the test's insert left deferred checks in this transaction
        cursor.execute("TRUNCATE embeddings_vector")

    assert corpus_version(space=space, corpus="letters") > before
