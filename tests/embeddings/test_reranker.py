"""The reranker client: scores in the documents' order from either response shape, and clear errors."""
from __future__ import annotations

import pytest

from bench.common import free_port
from embeddings.reranker import RerankerClient, RerankerError, get_reranker
from faq.embedding_registration import FAQ_TASK
from tests.support.reranker_double import bigram_overlap, run_reranker_double

DOCUMENTS = ["How do I change my phone number?", "Where is my parcel?", "change phone number linked to account"]
QUERY = "change my phone number"


@pytest.fixture
def reranker_double():
    with run_reranker_double() as double:
        yield double


@pytest.mark.parametrize("shape", ["sglang", "cohere"])
def test_it_returns_scores_in_the_documents_order_whatever_order_the_server_sends(reranker_double, shape):
    reranker_double.shape = shape
    client = RerankerClient(base_url=reranker_double.base_url, model="Qwen/Qwen3-Reranker-0.6B")
    scores = client.scores(query=QUERY, documents=DOCUMENTS, task="faq")
    assert scores == pytest.approx([bigram_overlap(QUERY, document) for document in DOCUMENTS])
    assert scores[1] < scores[0] and scores[1] < scores[2]  # the server sent them best first, not in this order


def test_it_sends_the_query_the_documents_the_model_and_the_task_instruction(reranker_double):
    RerankerClient(base_url=reranker_double.base_url, model="Qwen/Qwen3-Reranker-0.6B").scores(
        query=QUERY, documents=DOCUMENTS, task="faq")
    request = reranker_double.requests[-1]
    assert (request["model"], request["query"], request["documents"], request["instruct"]) == (
        "Qwen/Qwen3-Reranker-0.6B", QUERY, DOCUMENTS, FAQ_TASK.rerank_instruction)


@pytest.mark.parametrize("failure, message", [
    ("503", "answered 503"),
    ("duplicate_index", "repeated or out-of-range index"),
    ("nan", "without a finite score"),
])
def test_it_raises_a_reranker_error_that_says_what_went_wrong(reranker_double, failure, message):
    reranker_double.failure = failure
    with pytest.raises(RerankerError, match=message):
        RerankerClient(base_url=reranker_double.base_url, model="m").scores(query=QUERY, documents=DOCUMENTS,
                                                                          task="faq")


def test_it_raises_a_reranker_error_when_nothing_listens():
    client = RerankerClient(base_url=f"http://127.0.0.1:{free_port()}/v1", model="m", timeout=1.0)
    with pytest.raises(RerankerError, match="unreachable"):
        client.scores(query=QUERY, documents=DOCUMENTS, task="faq")


def test_it_asks_nothing_for_no_documents(reranker_double):
    client = RerankerClient(base_url=reranker_double.base_url, model="m")
    assert client.scores(query=QUERY, documents=[], task="faq") == []
    assert reranker_double.requests == []


def test_it_is_off_unless_configured(settings, reranker_double):
    settings.RERANKER_BASE_URL = None
    assert get_reranker() is None
    settings.RERANKER_BASE_URL = reranker_double.base_url
    assert get_reranker().base_url == reranker_double.base_url
