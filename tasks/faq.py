"""Celery tasks for FAQ matching: each parses its arguments and calls one faq service; all are safe to run twice."""
from __future__ import annotations

from celery import shared_task

from common.locks import one_run_at_a_time
from embeddings.errors import EmbeddingError
from faq import clustering, services


@shared_task(name="faq.index_pending_wordings", autoretry_for=(EmbeddingError,), retry_backoff=5,
             retry_backoff_max=60, max_retries=10)
@one_run_at_a_time("faq.index_pending_wordings")
def index_pending_wordings(refit: bool = False) -> int:
    """Embed wordings without a vector (queued on commit after library edits; beat also sweeps every minute)."""
    return services.index_pending_wordings(refit=refit)


@shared_task(name="faq.match_pending_inquiries")
@one_run_at_a_time("faq.match_pending_inquiries")
def match_pending_inquiries() -> int:
    """Match inquiries saved while the embedding endpoint was down."""
    return services.match_pending_inquiries()


@shared_task(name="faq.refit_classifier")
def refit_faq_classifier() -> None:
    """Refit the classifier when the library changed since the last fit (a no-op otherwise)."""
    services.refit_classifier()


@shared_task(name="faq.cluster_unanswered_inquiries")
@one_run_at_a_time("faq.cluster_unanswered_inquiries")
def cluster_unanswered_inquiries() -> int:
    """Group unanswered and escalated inquiries into topic clusters."""
    return clustering.cluster_inquiries()


# Not one-run-at-a-time: rows are claimed with SKIP LOCKED, and a reply queued on commit while the
# periodic run is sending should go out now, not a minute later.
@shared_task(name="faq.send_pending_replies", acks_late=True)
def send_pending_replies() -> int:
    """Mail the replies in the outbox that are due (queued on commit after an answer; beat every minute)."""
    return services.send_pending_replies()
