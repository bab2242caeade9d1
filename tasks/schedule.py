"""The beat schedule: periodic re-indexing, sweeping of stuck work and topic clustering."""
from celery.schedules import crontab

BEAT_SCHEDULE: dict = {}

# Verification: return stuck declaration items to the queue and keep pending items moving.
BEAT_SCHEDULE["verification-sweep-stuck-items"] = {
    "task": "verification.sweep_stuck_items",
    "schedule": 60.0,
}

# FAQ: embed new wordings within a minute even if the on-commit message was lost; match inquiries
# saved while the embedding endpoint was down; refresh topic clusters of what staff still must answer.
BEAT_SCHEDULE["faq-index-pending-wordings"] = {"task": "faq.index_pending_wordings", "schedule": 60.0}
BEAT_SCHEDULE["faq-match-pending-inquiries"] = {"task": "faq.match_pending_inquiries", "schedule": 60.0}
# FAQ: mail replies whose on-commit message was lost, and retry failed sends when their backoff is over.
BEAT_SCHEDULE["faq-send-pending-replies"] = {"task": "faq.send_pending_replies", "schedule": 60.0}
BEAT_SCHEDULE["faq-cluster-unanswered-inquiries"] = {"task": "faq.cluster_unanswered_inquiries",
                                                     "schedule": crontab(minute=15)}

# Embeddings: build the configured space when EMBEDDING_MODEL/DIMENSIONS changed (and re-queue a stalled
# build), and re-embed objects whose text changed or that are missing from the active space.
BEAT_SCHEDULE["embeddings-sync"] = {"task": "embeddings.sync_embeddings", "schedule": 300.0}
