"""The knowledge base's vectors: each entry's vector lives in the corpus of its text's script
(models.knowledge_corpus)."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from embeddings.services import index_documents
from embeddings.store import delete_vectors

from .models import KNOWLEDGE_CORPORA, knowledge_corpus


def index_knowledge_texts(*, entry_ids: Sequence[int], texts: Sequence[str]) -> None:
    """Embed these entries' texts as documents, each into its script's corpus (one embedding call per corpus).

    An entry whose text changed script leaves no vector behind in the other corpus.
    """
    by_corpus: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for entry_id, text in zip(entry_ids, texts, strict=True):
        by_corpus[knowledge_corpus(text)].append((entry_id, text))
    for corpus, rows in by_corpus.items():
        index_documents(corpus=corpus, object_ids=[entry_id for entry_id, _ in rows], texts=[text for _, text in rows])
        for other in KNOWLEDGE_CORPORA:
            if other != corpus:
                delete_vectors(corpus=other, object_ids=[entry_id for entry_id, _ in rows])


def delete_knowledge_vectors(*, entry_ids: Sequence[int]) -> None:
    """Remove these entries' vectors, whichever corpus they are in."""
    for corpus in KNOWLEDGE_CORPORA:
        delete_vectors(corpus=corpus, object_ids=entry_ids)
