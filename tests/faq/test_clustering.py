"""Topic clusters of unanswered and escalated inquiries."""
from datetime import timedelta

from django.utils import timezone

from faq.clustering import cluster_inquiries
from faq.models import Inquiry, TopicCluster


def escalated(question: str, days_ago: int = 0) -> Inquiry:
    inquiry = Inquiry.objects.create(question=question, status=Inquiry.Status.ESCALATED)
    Inquiry.objects.filter(id=inquiry.id).update(created_at=timezone.now() - timedelta(days=days_ago))
    return inquiry


def test_it_groups_inquiries_that_mean_the_same_and_counts_this_week_against_last(db):
    gift = [escalated("Can I pay with a gift card?"), escalated("Do you accept gift cards?", days_ago=9),
            escalated("Is paying by gift card possible?")]
    escalated("Where is your shop in Berlin?")
    Inquiry.objects.create(question="Can I pay with gift cards?", status=Inquiry.Status.ANSWERED)  # not for staff

    assert cluster_inquiries() == 1
    cluster = TopicCluster.objects.get()
    assert cluster.size == 3 and cluster.size_this_week == 2 and cluster.size_last_week == 1 and cluster.trend == 1
    assert set(cluster.inquiries.values_list("id", flat=True)) == {inquiry.id for inquiry in gift}
    assert cluster.label in {inquiry.question for inquiry in gift}


def test_it_replaces_the_previous_clusters(db):
    escalated("Can I pay with a gift card?")
    escalated("Do you accept gift cards?")
    cluster_inquiries()
    Inquiry.objects.update(status=Inquiry.Status.CLOSED)
    assert cluster_inquiries() == 0
    assert not TopicCluster.objects.exists()
