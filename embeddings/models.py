"""Embedding spaces, the vectors stored in them, and the cache of computed vectors.

Every stored vector belongs to a space (model + dimensions + prompt version).
Vectors of all spaces and corpora share one table with an untyped `halfvec`
column; each (space, corpus) pair gets its own partial HNSW index on the
embedding cast to the space's dimension (see embeddings.store.ensure_index), which
is how pgvector indexes mixed dimensions. Searches name the active space, so the
old space keeps serving while a new one is built beside it.
"""
from __future__ import annotations

from django.db import models
from django.db.models import Q
from pgvector.django import HalfVectorField


class EmbeddingSpace(models.Model):
    class State(models.TextChoices):
        BUILDING = "building", "Building"
        ACTIVE = "active", "Active"
        RETIRED = "retired", "Retired"

    model_name = models.CharField(max_length=200)
    dimensions = models.PositiveIntegerField()
    prompt_version = models.CharField(max_length=100)
    state = models.CharField(max_length=16, choices=State.choices, default=State.BUILDING)
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)
    # Where this space's model is served. Queries of the active space go here even while a new space is
    # built from another endpoint (a new model deployed beside the old one), so searches keep answering.
    endpoint_url = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["model_name", "dimensions", "prompt_version"], name="embedding_space_identity_unique"
            ),
            # At most one space serves searches at a time.
            models.UniqueConstraint(fields=["state"], condition=Q(state="active"), name="embedding_space_one_active"),
        ]

    def __str__(self) -> str:
        return f"{self.model_name} / {self.dimensions}d / {self.prompt_version} ({self.state})"


class Vector(models.Model):
    """One document vector: the embedding of `object_id`'s text in `corpus`, in `space`."""

    space = models.ForeignKey(EmbeddingSpace, on_delete=models.CASCADE, related_name="vectors")
    # The kind of thing embedded: a corpus name an app registered in embeddings.corpora.
    corpus = models.CharField(max_length=40)
    object_id = models.BigIntegerField()
    # sha256 of the exact text embedded: a changed text no longer matches and is re-embedded.
    text_hash = models.BinaryField(max_length=32)
    embedding = HalfVectorField()

    class Meta:
        constraints = [
            # Its index serves the upsert of store.store_vectors (ON CONFLICT) and
            # selectors.objects_needing_embedding (which objects are missing or stale in a space).
            models.UniqueConstraint(fields=["space", "corpus", "object_id"], name="vector_one_per_object_unique"),
        ]


class SpaceBuildProgress(models.Model):
    """How far the build of a space has walked one corpus; the build resumes from here after any crash."""

    space = models.ForeignKey(EmbeddingSpace, on_delete=models.CASCADE, related_name="build_progress")
    corpus = models.CharField(max_length=40)
    # Objects with id <= this are in the space; the next chunk starts after it.
    last_object_id = models.BigIntegerField(default=0)
    objects_embedded = models.PositiveIntegerField(default=0)
    objects_seen = models.PositiveIntegerField(default=0)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            # One position per corpus and space; services.build_space_chunk claims rows by (space_id, finished_at).
            models.UniqueConstraint(fields=["space", "corpus"], name="space_build_progress_unique"),
        ]

    def __str__(self) -> str:
        state = "done" if self.finished_at else f"after id {self.last_object_id}"
        return f"{self.space_id}/{self.corpus}: {state}"


class CachedEmbedding(models.Model):
    """A vector already computed for an exact input, so a repeated text costs a lookup, not a model call."""

    space = models.ForeignKey(EmbeddingSpace, on_delete=models.CASCADE, related_name="cached_embeddings")
    # sha256 over the side ("query"/"document") and the exact text sent to the model (instruction included).
    input_hash = models.BinaryField(max_length=32)
    embedding = HalfVectorField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # Its index serves every cache lookup (selectors.cached_embeddings: space_id = S AND input_hash = ANY(...)).
            models.UniqueConstraint(fields=["space", "input_hash"], name="cached_embedding_input_unique"),
        ]


class LanguageMean(models.Model):
    """The mean vector of one language's texts on one side (query or document) of a space, for one scope.

    Multilingual encoders put a strong language component in every vector; subtracting each language's
    mean before the cosine removes most of it, so a question finds texts of another language by meaning
    (embeddings.centring). A scope is whatever set of texts the means were learned from (a corpus, say):
    document means are the ones stored vectors were centred with; query means follow the traffic.
    """

    class Side(models.TextChoices):
        QUERY = "query", "Query"
        DOCUMENT = "document", "Document"

    space = models.ForeignKey(EmbeddingSpace, on_delete=models.CASCADE, related_name="language_means")
    scope = models.CharField(max_length=64)
    language = models.CharField(max_length=16)
    side = models.CharField(max_length=8, choices=Side.choices)
    mean = models.BinaryField()  # float32 (dimensions,), numpy .npy bytes
    sample_count = models.PositiveBigIntegerField()  # how many vectors the mean was learned from
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            # Its index serves every read (embeddings.centring.language_means: space, scope and side).
            models.UniqueConstraint(fields=["space", "scope", "side", "language"], name="language_mean_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.scope}/{self.side}/{self.language} (n={self.sample_count})"


class CorpusVersion(models.Model):
    """The last change to the vectors of one corpus in one space: a number that only grows, kept by PostgreSQL.

    Statement-level triggers on embeddings_vector (migration 0005) set it from a sequence for every INSERT,
    UPDATE, DELETE or COPY that touches the corpus, and for every TRUNCATE, whoever writes: so a cache keyed on
    it (a verdict reused for a description already judged) can never miss a change made by a bulk load, a sync
    or psql.
    """

    # Not a foreign key: the trigger writes here while a space's vectors are deleted with the space.
    space_id = models.BigIntegerField()
    corpus = models.CharField(max_length=40)
    version = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["space_id", "corpus"], name="corpus_version_unique")]
