"""What FAQ matching tells the embedding layer at start-up (FaqConfig.ready): its task, corpus, thresholds
and golden texts. The embedding layer knows no domain; this is where it learns about FAQs."""
from __future__ import annotations

from embeddings.corpora import Corpus, register_corpus
from embeddings.registry import GoldenSet, Task, register_default_thresholds, register_golden_set, register_task

FAQ_TASK = Task(
    name="faq",
    instruction="Given a customer service inquiry, retrieve the most relevant FAQ",
    # Qwen3-Reranker judges relevance for a task given in English, as the embedding model's queries are.
    rerank_instruction="Given a customer service inquiry, judge whether the FAQ question asks the same thing",
)
# "faq": the best wording's cosine that answers; "pair": two questions that mean the same ('pair' queries).
DEFAULT_THRESHOLDS = {
    "multilingual-e5": {"faq": 0.88, "pair": 0.90},
    "qwen3-embedding": {"faq": 0.62, "pair": 0.80},
}
LIBRARY_QUESTIONS = (
    "How do I track my parcel?",
    "What is the VAT rate on wine?",
    "How can I change my delivery address?",
    "我的退款什么时候到账？",
)
# Customer questions and the library question each one rephrases.
PARAPHRASES = {
    "Where can I see where my package is?": "How do I track my parcel?",
    "Can I send the order to a different address?": "How can I change my delivery address?",
    "退款多久能退回来": "我的退款什么时候到账？",
}


def register_with_embeddings() -> None:
    from .selectors import LIVE_CORPUS

    register_task(FAQ_TASK)
    for family, thresholds in DEFAULT_THRESHOLDS.items():
        register_default_thresholds(model_family=family, thresholds=thresholds)
    register_golden_set(GoldenSet(task=FAQ_TASK.name, queries=PARAPHRASES, documents=LIBRARY_QUESTIONS))
    register_corpus(Corpus(name=LIVE_CORPUS, fetch_texts=fetch_live_wordings, prepare_vectors=centre_live_wordings))


def centre_live_wordings(space, wording_ids: list[int], vectors):
    """Live wording vectors are stored centred per language (faq.services.recentre_library)."""
    from .models import LIVE_NAMESPACE
    from .services import centred_wording_vectors

    return centred_wording_vectors(space, wording_ids, vectors, namespace=LIVE_NAMESPACE)


def fetch_live_wordings(after_id: int, limit: int) -> list[tuple[int, str]]:
    """Every wording of an active live FAQ (its question included) is one document of the corpus."""
    from .models import LIVE_NAMESPACE, FaqWording

    return list(
        FaqWording.objects.filter(id__gt=after_id, faq__namespace=LIVE_NAMESPACE, faq__active=True)
        .order_by("id").values_list("id", "text")[:limit]
    )
