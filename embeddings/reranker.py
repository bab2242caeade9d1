"""Client of a reranker endpoint: `POST {base}/rerank` with a query and documents, a score per document.

Qwen3-Reranker served by SGLang answers a JSON list of {index, score}; Cohere/Jina-style servers answer
{"results": [{index, relevance_score}]}. Both are read; scores come back in the documents' order.
No retries: the reranker is an optional refinement on an interactive path, so a slow or failing one is
skipped (RerankerError) and the first-stage ranking stands.
"""
from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass

import httpx
from django.conf import settings

from .registry import get_task


class RerankerError(Exception):
    """The reranker did not answer usefully; callers keep the first-stage ranking."""


@dataclass
class RerankerClient:
    base_url: str
    model: str
    api_key: str = "not-needed"
    timeout: float = 2.0

    def __post_init__(self) -> None:
        self._http = httpx.Client(base_url=self.base_url.rstrip("/"), timeout=self.timeout,
                                  headers={"Authorization": f"Bearer {self.api_key}"})

    def scores(self, *, query: str, documents: list[str], task: str) -> list[float]:
        """One relevance score per document, in the documents' order (higher is more relevant), judged as the
        registered `task` says (its rerank_instruction, in English as the embedding model's queries are)."""
        instruction = get_task(task).rerank_instruction
        if not documents:
            return []
        try:
            response = self._http.post("/rerank", json={
                "model": self.model, "query": query, "documents": documents, "instruct": instruction,
                "top_n": len(documents), "return_documents": False,
            })
        except httpx.HTTPError as error:
            raise RerankerError(f"reranker {self.base_url} unreachable: {error}") from error
        if response.status_code != 200:
            raise RerankerError(f"reranker {self.base_url} answered {response.status_code}: {response.text[:200]}")
        try:
            payload = response.json()
        except ValueError as error:
            raise RerankerError(f"reranker {self.base_url} answered something that is not JSON") from error
        return scores_in_document_order(payload, count=len(documents))

    def close(self) -> None:
        self._http.close()


def scores_in_document_order(payload, *, count: int) -> list[float]:
    """Validate a rerank response (each index once, finite scores) and order its scores by index."""
    items = payload.get("results") if isinstance(payload, dict) else payload
    if not isinstance(items, list):
        raise RerankerError(f"reranker response has no list of results: {str(payload)[:200]}")
    scores: list[float | None] = [None] * count
    for item in items:
        index = item.get("index") if isinstance(item, dict) else None
        score = item.get("relevance_score", item.get("score")) if isinstance(item, dict) else None
        if not isinstance(index, int) or not 0 <= index < count or scores[index] is not None:
            raise RerankerError(f"reranker result with a missing, repeated or out-of-range index: {item}")
        if not isinstance(score, (int, float)) or not math.isfinite(score):
            raise RerankerError(f"reranker result without a finite score: {item}")
        scores[index] = float(score)
    if any(score is None for score in scores):
        raise RerankerError(f"reranker scored {sum(s is not None for s in scores)} of {count} documents")
    return scores  # type: ignore[return-value]


_reranker: RerankerClient | None = None
_reranker_lock = threading.Lock()


def _forget_reranker_in_forked_child() -> None:
    """Like embeddings.client's clients: a forked process opens its own connections."""
    global _reranker, _reranker_lock
    _reranker, _reranker_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_reranker_in_forked_child)


def get_reranker() -> RerankerClient | None:
    """The configured reranker, or None when RERANKER_BASE_URL is unset (the default)."""
    global _reranker
    if not settings.RERANKER_BASE_URL:
        return None
    with _reranker_lock:
        if _reranker is None or (_reranker.base_url, _reranker.model) != (settings.RERANKER_BASE_URL,
                                                                         settings.RERANKER_MODEL):
            if _reranker is not None:
                _reranker.close()  # its connections; the settings changed under it (tests, a reload)
            _reranker = RerankerClient(base_url=settings.RERANKER_BASE_URL, model=settings.RERANKER_MODEL,
                                       api_key=settings.RERANKER_API_KEY, timeout=settings.RERANKER_TIMEOUT_SECONDS)
        return _reranker
