"""FAQ reads that depend on the embedding space being searched."""
from __future__ import annotations

import pytest
from django.conf import settings

from embeddings.models import EmbeddingSpace
from embeddings.profiles import profile_for
from faq.selectors import threshold_for

pytestmark = pytest.mark.django_db


def test_an_uncalibrated_space_gets_the_default_of_its_own_model_not_the_configured_clients():
    assert profile_for(settings.EMBEDDING_MODEL).family == "multilingual-e5"  # the configured client: e5 (0.88)
    qwen_space = EmbeddingSpace.objects.create(model_name="Qwen/Qwen3-Embedding-0.6B", dimensions=1024,
                                               prompt_version="qwen3-instruct-v1",
                                               state=EmbeddingSpace.State.BUILDING)

    assert threshold_for(space=qwen_space, task="faq") == 0.62  # during a switch, Qwen3 scores meet Qwen3's default
    assert threshold_for(space=qwen_space, task="pair") == 0.80
