"""A golden check of meaning for any embedding endpoint: known texts must find their known neighbours.

Served vectors have differed from the reference implementation (truncation, broken padding, a
wrong pooling or prompt) while their shape was right, so the dimension checks pass and every
search quietly degrades. These texts need no database: `manage.py embedding_health --golden`
runs them against the configured endpoint, e.g. after pointing EMBEDDING_BASE_URL at a new server.

Two checks:
1. each Chinese product description finds the English product it names, and each customer
   question finds its paraphrase rather than an unrelated question (any working multilingual
   model ranks these; a broken server ranks them at random);
2. a text embedded alone and in a batch with longer texts gets the same vector (padding).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .client import EmbeddingClient

PRODUCTS = [
    "Bluetooth earphone without cable",
    "Cotton T-shirt for men",
    "Stainless steel bolts M8",
    "Frozen peeled shrimp",
    "Laptop computer with 15 inch screen",
    "Red wine in bottles",
]
# Chinese descriptions and the English product each one describes (cross-lingual, as declarations are).
PRODUCT_DESCRIPTIONS = {
    "无线蓝牙耳机": "Bluetooth earphone without cable",
    "男士纯棉T恤": "Cotton T-shirt for men",
    "不锈钢螺栓": "Stainless steel bolts M8",
    "冷冻去壳虾仁": "Frozen peeled shrimp",
    "笔记本电脑": "Laptop computer with 15 inch screen",
    "瓶装红葡萄酒": "Red wine in bottles",
}
FAQ_QUESTIONS = [
    "How do I track my parcel?",
    "What is the VAT rate on wine?",
    "How can I change my delivery address?",
    "我的退款什么时候到账？",
]
# Customer questions and the library question each one rephrases.
FAQ_PARAPHRASES = {
    "Where can I see where my package is?": "How do I track my parcel?",
    "Can I send the order to a different address?": "How can I change my delivery address?",
    "退款多久能退回来": "我的退款什么时候到账？",
}
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
    _expect_nearest(report, client, queries=PRODUCT_DESCRIPTIONS, documents=PRODUCTS, task="hs_code")
    _expect_nearest(report, client, queries=FAQ_PARAPHRASES, documents=FAQ_QUESTIONS, task="faq")
    alone = client.embed_documents([PRODUCTS[0]])[0]
    padded = client.embed_documents([PADDING_TEXT, PRODUCTS[0], PADDING_TEXT[:80]])[1]
    report.checked += 1
    if float(alone @ padded) < SAME_TEXT_COSINE:
        report.misses.append(f"{PRODUCTS[0]!r} alone and in a padded batch differ (cosine {float(alone @ padded):.4f}): "
                             "the server's batching changes vectors")
    report.passed = not report.misses
    return report


def _expect_nearest(report: GoldenReport, client: EmbeddingClient, *, queries: dict[str, str], documents: list[str],
                    task: str) -> None:
    document_vectors = client.embed_documents(documents)
    query_vectors = client.embed_queries(list(queries), task=task)
    nearest = np.argmax(query_vectors @ document_vectors.T, axis=1)
    for (query, expected), index in zip(queries.items(), nearest):
        report.checked += 1
        if documents[index] != expected:
            report.misses.append(f"{query!r} found {documents[index]!r}, expected {expected!r}")
