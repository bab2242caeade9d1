"""Topic clusters of what staff still have to answer, so the FAQ that helps most people is written first."""
from __future__ import annotations

from datetime import timedelta

import numpy as np
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from embeddings.services import embed_queries
from embeddings.store import active_space

from .models import Inquiry, TopicCluster
from .selectors import threshold_for

LOOKBACK_DAYS = 60
MAX_INQUIRIES = 5000
REPRESENTATIVES = 3


def inquiries_to_cluster() -> list[Inquiry]:
    """Escalated, unhelpful, or matched without a confident answer, in the last LOOKBACK_DAYS."""
    since = timezone.now() - timedelta(days=LOOKBACK_DAYS)
    unanswered = Q(status=Inquiry.Status.RECEIVED, matched_at__isnull=False)
    return list(
        Inquiry.objects.filter(Q(status=Inquiry.Status.ESCALATED) | Q(helpful=False) | unanswered,
                               created_at__gte=since)
        .exclude(status=Inquiry.Status.CLOSED)
        .order_by("-created_at").only("id", "question", "created_at")[:MAX_INQUIRIES]
    )


def cluster_inquiries() -> int:
    """Replace the topic clusters with a fresh grouping; returns the number of clusters of two or more.

    1. Embed the questions as symmetric 'pair' queries (through the cache: re-runs cost lookups).
    2. Agglomerative clustering, average linkage, cutting at the cosine distance that the
       space's calibrated pair threshold means ("same meaning").
    3. Each cluster is named by its most central questions; size and this week vs last week.
    """
    from sklearn.cluster import AgglomerativeClustering

    inquiries = inquiries_to_cluster()
    groups: list[list[int]] = []
    vectors = np.zeros((0, 0))
    if len(inquiries) >= 2:
        vectors = embed_queries([inquiry.question for inquiry in inquiries], task="pair")
        distance = max(0.02, 1.0 - threshold_for(space=active_space(), task="pair"))
        labels = AgglomerativeClustering(
            n_clusters=None, metric="cosine", linkage="average", distance_threshold=distance,
        ).fit_predict(vectors)
        by_label: dict[int, list[int]] = {}
        for position, label in enumerate(labels):
            by_label.setdefault(int(label), []).append(position)
        groups = [members for members in by_label.values() if len(members) >= 2]
    now = timezone.now()
    week_ago, two_weeks_ago = now - timedelta(days=7), now - timedelta(days=14)
    with transaction.atomic():
        TopicCluster.objects.all().delete()  # inquiries' topic_cluster becomes NULL (SET_NULL)
        for members in groups:
            centroid = vectors[members].mean(axis=0)
            central = sorted(members, key=lambda position: -float(vectors[position] @ centroid))
            questions = [inquiries[position].question for position in central[:REPRESENTATIVES]]
            dates = [inquiries[position].created_at for position in members]
            cluster = TopicCluster.objects.create(
                label=questions[0][:300], representative_questions=questions, size=len(members),
                size_this_week=sum(1 for date in dates if date >= week_ago),
                size_last_week=sum(1 for date in dates if two_weeks_ago <= date < week_ago),
            )
            Inquiry.objects.filter(id__in=[inquiries[position].id for position in members]).update(
                topic_cluster=cluster
            )
    return len(groups)
