"""The FAQ library, the inquiries customers send, and what is learned from both.

Every FAQ lives in a namespace: "live" is what customers are answered from;
`evaluate_faq` loads a library into its own namespace (and its own vector
corpus) and deletes it afterwards, so live FAQs are never touched.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

LIVE_NAMESPACE = "live"


class Faq(models.Model):
    namespace = models.CharField(max_length=64, default=LIVE_NAMESPACE)
    # The faq_id of an imported CSV: re-importing the same file updates instead of duplicating.
    external_id = models.CharField(max_length=100, blank=True)
    question = models.TextField()
    answer = models.TextField(blank=True)
    category = models.CharField(max_length=100, blank=True)
    language = models.CharField(max_length=16, default="en")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "FAQ"
        constraints = [
            models.UniqueConstraint(
                fields=["namespace", "external_id"], condition=~Q(external_id=""), name="faq_external_id_unique"
            ),
        ]
        indexes = [
            # Used by faq.selectors.faqs_by_id / the admin list: live, active FAQs of one namespace.
            models.Index(fields=["namespace", "active"], name="faq_namespace_active_idx"),
        ]

    def __str__(self) -> str:
        return self.question[:80]

    def answer_in(self, language: str) -> tuple[str, str]:
        """(answer, language): the customer's language where a translation exists, else the FAQ's own."""
        if language != self.language:
            translation = next((t for t in self.translations.all() if t.language == language), None)
            if translation is not None:
                return translation.answer, translation.language
        return self.answer, self.language


class FaqTranslation(models.Model):
    """The answer of an FAQ in another language, shown to customers who ask in that language."""

    faq = models.ForeignKey(Faq, on_delete=models.CASCADE, related_name="translations")
    language = models.CharField(max_length=16)
    answer = models.TextField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["faq", "language"], name="faq_translation_language_unique")]


class FaqWording(models.Model):
    """One way of asking an FAQ (its question is one too); each is one document of the vector corpus."""

    class Source(models.TextChoices):
        QUESTION = "question", "The FAQ's question"
        IMPORTED = "imported", "Imported"
        STAFF = "staff", "Written by staff"
        INQUIRY = "inquiry", "From a customer inquiry"

    faq = models.ForeignKey(Faq, on_delete=models.CASCADE, related_name="wordings")
    text = models.TextField()
    language = models.CharField(max_length=16, default="en")
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.STAFF)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.text[:80]


class FaqClassifier(models.Model):
    """A classifier over the wording vectors of one namespace, refit when the library changes.

    Nearest neighbour alone confuses FAQs whose wordings overlap; logistic regression
    over all wordings learns which directions separate them, and its probability is
    the confidence that decides whether an answer is shown.
    """

    space = models.ForeignKey("embeddings.EmbeddingSpace", on_delete=models.CASCADE, related_name="+")
    namespace = models.CharField(max_length=64, default=LIVE_NAMESPACE)
    faq_ids = models.JSONField()  # class order of the weight rows
    weights = models.BinaryField()  # float32 (classes x dimensions), numpy .npy bytes
    bias = models.BinaryField()  # float32 (classes,), numpy .npy bytes
    # Probability at or above which the best FAQ is answered, calibrated by cross-validation on the library.
    confidence_threshold = models.FloatField()
    # sha256 over the (wording id, faq id) pairs it was fitted on: differs once the library changes.
    library_fingerprint = models.CharField(max_length=64)
    wording_count = models.PositiveIntegerField()
    cross_validation = models.JSONField(default=dict)
    fitted_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "FAQ classifier"
        constraints = [
            models.UniqueConstraint(fields=["space", "namespace"], name="faq_classifier_space_namespace_unique"),
        ]


class TopicCluster(models.Model):
    """A group of unanswered or escalated inquiries that mean the same thing (one clustering run)."""

    label = models.CharField(max_length=300)
    representative_questions = models.JSONField(default=list)
    size = models.PositiveIntegerField()
    size_this_week = models.PositiveIntegerField(default=0)
    size_last_week = models.PositiveIntegerField(default=0)
    computed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-size"]

    def __str__(self) -> str:
        return self.label

    @property
    def trend(self) -> int:
        return self.size_this_week - self.size_last_week


class Inquiry(models.Model):
    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        ANSWERED = "answered", "Answered"
        ESCALATED = "escalated", "Escalated to staff"
        CLOSED = "closed", "Closed"

    question = models.TextField()
    name = models.CharField(max_length=100, blank=True)
    contact = models.CharField(max_length=200, blank=True)
    language = models.CharField(max_length=16, default="en")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED)
    # Null until matching ran; a worker sweeps received inquiries whose matching failed.
    matched_at = models.DateTimeField(null=True, blank=True)
    match_attempts = models.PositiveSmallIntegerField(default=0)
    matched_faq = models.ForeignKey(Faq, null=True, blank=True, on_delete=models.SET_NULL, related_name="inquiries")
    match_score = models.FloatField(null=True, blank=True)  # cosine of the best wording
    match_confidence = models.FloatField(null=True, blank=True)
    suggestions = models.JSONField(default=list, blank=True)  # [{"faq_id", "question", "score", "confidence"}]
    helpful = models.BooleanField(null=True, blank=True)
    staff_answer = models.TextField(blank=True)
    answered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    answered_at = models.DateTimeField(null=True, blank=True)
    # Salted hash of the client address: rate limits and abuse review without storing the address.
    client_fingerprint = models.CharField(max_length=64, blank=True)
    topic_cluster = models.ForeignKey(
        TopicCluster, null=True, blank=True, on_delete=models.SET_NULL, related_name="inquiries"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "inquiries"
        indexes = [
            # Used by faq.services.match_pending_inquiries: received inquiries not matched yet, oldest first.
            models.Index(
                fields=["created_at"], name="inquiry_unmatched_idx",
                condition=Q(status="received", matched_at__isnull=True),
            ),
            # Used by the staff inbox (faq.selectors.inbox_inquiries) and clustering: escalated or unhelpful.
            models.Index(
                fields=["-created_at"], name="inquiry_needs_staff_idx",
                condition=Q(status="escalated") | Q(helpful=False),
            ),
        ]

    def __str__(self) -> str:
        return self.question[:80]


class PairHead(models.Model):
    """Whether two texts mean the same, learned on labelled pairs over one space's frozen vectors.

    The cosine alone barely separates hard paraphrase pairs (AFQMC with the CPU model: no better than
    answering "different" every time); logistic regression over pair features (|u-v|, u*v and the
    cosine, faq.matching.pair_features) learns which directions matter. Refit with `fit_pair_head`.
    """

    space = models.OneToOneField("embeddings.EmbeddingSpace", on_delete=models.CASCADE, related_name="+")
    weights = models.BinaryField()  # float32 (features,), numpy .npy bytes; standardising folded in
    bias = models.FloatField()
    # Probability at or above which a pair is "same meaning": the most accurate one in cross-validation.
    threshold = models.FloatField()
    source = models.CharField(max_length=300, blank=True)  # the labelled pair file it was fitted on
    metrics = models.JSONField(default=dict)  # cross-validated accuracy and F1 at the threshold
    fitted_at = models.DateTimeField(auto_now=True)


class CalibratedThreshold(models.Model):
    """A decision threshold calibrated on labelled data for one embedding space.

    Cosine scales differ by model and prompt, so a threshold belongs to its space;
    where none was calibrated the model profile's default is used.
    """

    class Task(models.TextChoices):
        FAQ = "faq", "FAQ answer (best wording cosine)"
        PAIR = "pair", "Pair similarity (same meaning)"

    space = models.ForeignKey("embeddings.EmbeddingSpace", on_delete=models.CASCADE, related_name="+")
    task = models.CharField(max_length=16, choices=Task.choices)
    # "" for every question; "en>zh" for English questions whose best wording is Chinese, where
    # cross-lingual precision differs from the rest (faq.selectors.cosine_threshold_for_pair).
    language_pair = models.CharField(max_length=33, blank=True, default="")
    value = models.FloatField()
    # FAQ cosine rule: how far the best FAQ must lead the second (calibrated with `value` as its floor);
    # null: faq.matching.DEFAULT_COSINE_MARGIN.
    margin = models.FloatField(null=True, blank=True)
    source = models.CharField(max_length=300, blank=True)  # the data set it was calibrated on
    metrics = models.JSONField(default=dict)
    calibrated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["space", "task", "language_pair"],
                                               name="calibrated_threshold_space_task_pair_unique")]


class InboxInquiry(Inquiry):
    """The staff inbox in admin: escalated and unhelpful inquiries (faq.selectors.inbox_inquiries)."""

    class Meta:
        proxy = True
        verbose_name = "inbox inquiry"
        verbose_name_plural = "staff inbox"


class OutgoingReply(models.Model):
    """A reply to a customer, written in the same transaction as the answer and mailed by a worker.

    The outbox: an answer committed is a reply that will be sent, whatever happens to the web process,
    the task message or the mail server afterwards. faq.services.send_pending_replies claims due rows,
    sends them, and retries with backoff; after MAX_REPLY_ATTEMPTS the row is `failed` with the error,
    visible in the staff inbox.
    """

    class State(models.TextChoices):
        PENDING = "pending", "Waiting to be sent"
        SENDING = "sending", "Being sent"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    inquiry = models.ForeignKey(Inquiry, on_delete=models.CASCADE, related_name="replies")
    recipient = models.CharField(max_length=200)
    subject = models.CharField(max_length=200)
    body = models.TextField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    # Not before this time: the backoff after a failed attempt.
    next_attempt_at = models.DateTimeField(default=timezone.now)
    # When a worker took it to send: a row still `sending` long after is a crashed send, claimed again.
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "outgoing replies"
        indexes = [
            # Used by faq.services.send_pending_replies: replies still to send, due first.
            models.Index(fields=["next_attempt_at"], name="outgoing_reply_due_idx",
                         condition=Q(state__in=["pending", "sending"])),
            # Used by the staff inbox: an inquiry's latest reply.
            models.Index(fields=["inquiry", "-created_at"], name="outgoing_reply_inquiry_idx"),
        ]

    def __str__(self) -> str:
        return f"reply to {self.recipient} ({self.get_state_display()})"
