"""A golden check of meaning for any embedding endpoint: known texts must find their known neighbours.

Served vectors have differed from the reference implementation (truncation, broken padding, a
wrong pooling or prompt) while their shape was right, so the dimension checks pass and every
search quietly degrades. These texts need no database: `manage.py embedding_health --golden`
runs them against the configured endpoint, e.g. after pointing EMBEDDING_BASE_URL at a new server.

Two checks:
1. each query of every golden set the apps registered (embeddings.registry) finds the document it
   names (any working multilingual model ranks these; a broken server ranks them at random);
2. a text embedded alone and in a batch with longer texts gets the same vector (padding).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .client import EmbeddingClient
from .registry import golden_sets

# Vectors of the same text alone and in a padded batch agree at least this well (float16 servers: ~0.9999).
SAME_TEXT_COSINE = 0.995
PADDING_TEXT = ("Assorted spare parts for industrial sewing machines, including needles, bobbins, presser feet, "
                "tension springs and motor belts, packed in cartons of twenty pieces each. ") * 4


@dataclass
class GoldenReport:
    passed: bool = True
    misses: list[str] = field(default_factory=list)  # what went wrong, one line each
    checked: int = 0

    def to_json(self) -> dict:
        return {"passed": self.passed, "checked": self.checked, "misses": self.misses}


def check_golden_neighbours(client: EmbeddingClient) -> GoldenReport:
    """Run both checks through `client` (about 25 texts); raises EmbeddingError when the endpoint fails."""
    report = GoldenReport()
    registered = golden_sets()
    if not registered:
        raise ValueError("no golden set is registered; the apps register theirs in AppConfig.ready")
    for golden_set in registered:
        _expect_nearest(report, client, queries=golden_set.queries, documents=list(golden_set.documents),
                        task=golden_set.task)
    text = registered[0].documents[0]
    alone = client.fetch_document_vectors([text])[0]
    padded = client.fetch_document_vectors([PADDING_TEXT, text, PADDING_TEXT[:80]])[1]
    report.checked += 1
    if float(alone @ padded) < SAME_TEXT_COSINE:
        report.misses.append(f"{text!r} alone and in a padded batch differ (cosine {float(alone @ padded):.4f}): "
                             "the server's batching changes vectors")
    report.passed = not report.misses
    return report


def _expect_nearest(report: GoldenReport, client: EmbeddingClient, *, queries: dict[str, str], documents: list[str],
                    task: str) -> None:
    document_vectors = client.fetch_document_vectors(documents)
    query_vectors = client.fetch_query_vectors(list(queries), task=task)
    nearest = np.argmax(query_vectors @ document_vectors.T, axis=1)
    for (query, expected), index in zip(queries.items(), nearest):
        report.checked += 1
        if documents[index] != expected:
            report.misses.append(f"{query!r} found {documents[index]!r}, expected {expected!r}")
