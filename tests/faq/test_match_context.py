"""What a match remembers between requests (outside a test transaction, where a request runs)."""
from __future__ import annotations

import numpy as np
import pytest
from django.db import transaction

from embeddings import centring
from embeddings.store import active_space
from faq import selectors

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def nothing_remembered():
    selectors.forget_match_context()
    yield
    selectors.forget_match_context()


def centre_one(space) -> np.ndarray:
    vector = np.eye(1, space.dimensions, dtype=np.float32)
    return selectors.centred_questions(space=space, namespace="live", questions=["How do I reset it?"],
                                       vectors=vector)


def test_it_remembers_the_language_means_and_forgets_them_when_they_change():
    space = active_space()
    assert np.array_equal(centre_one(space), np.eye(1, space.dimensions, dtype=np.float32))
    assert selectors.match_context

    mean = np.full(space.dimensions, 0.01, dtype=np.float32)
    centring.replace_means(space=space, scope="faq_wording", side="document", means={"en": (mean, 100)})
    assert not selectors.match_context
    assert not np.array_equal(centre_one(space), np.eye(1, space.dimensions, dtype=np.float32))


def test_it_reads_the_language_means_afresh_inside_a_transaction():
    space = active_space()
    with transaction.atomic():
        centre_one(space)
    assert not selectors.match_context
