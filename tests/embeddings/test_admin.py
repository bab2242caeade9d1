"""Admin pages of embedding spaces: visible to staff, with build progress, and never editable by hand."""
from __future__ import annotations

import pytest

from embeddings.models import EmbeddingSpace, SpaceBuildProgress

pytestmark = pytest.mark.django_db


def test_it_shows_a_space_with_its_build_progress_and_no_add_button(client, staff_user):
    space = EmbeddingSpace.objects.create(model_name="Qwen/Qwen3-Embedding-0.6B", dimensions=512,
                                          prompt_version="qwen3-instruct-v1")
    SpaceBuildProgress.objects.create(space=space, corpus="hs_knowledge", last_object_id=4200, objects_seen=4200)
    client.force_login(staff_user)
    listing = client.get("/admin/embeddings/embeddingspace/")
    assert listing.status_code == 200 and b"Qwen/Qwen3-Embedding-0.6B" in listing.content
    assert b"/admin/embeddings/embeddingspace/add/" not in listing.content
    detail = client.get(f"/admin/embeddings/embeddingspace/{space.id}/change/")
    assert detail.status_code == 200 and b"hs_knowledge" in detail.content and b"4200" in detail.content
    assert client.post(f"/admin/embeddings/embeddingspace/{space.id}/delete/", {"post": "yes"}).status_code == 403
    assert EmbeddingSpace.objects.filter(id=space.id).exists()
