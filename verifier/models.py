"""Declaration verification: the HS nomenclature, the knowledge base of evidence, declarations and verdicts."""
from __future__ import annotations

from django.db import models

from common.scripts import contains_cjk

# Corpus names of KnowledgeEntry vectors in the embeddings store: evidence is split by script, each
# part with its own HNSW index, and a search walks both. In one graph the Chinese and the English
# evidence form islands with few links between them: measured on the hsbench dev files (17k entries,
# ef_search 100), depending on the build, 1-12% of the English descriptions came back with 30 Chinese
# lines and none of their true (English) neighbours; searched part by part, none did.
KNOWLEDGE_CORPUS = "hs_knowledge"
KNOWLEDGE_CORPUS_CJK = "hs_knowledge_cjk"
KNOWLEDGE_CORPORA = (KNOWLEDGE_CORPUS, KNOWLEDGE_CORPUS_CJK)
# A text with any CJK ideograph goes to the CJK part (common.scripts.contains_cjk; the same class in SQL).


def knowledge_corpus(text: str) -> str:
    """The corpus (and so the HNSW index) a knowledge entry's vector belongs to, by its text's script."""
    return KNOWLEDGE_CORPUS_CJK if contains_cjk(text) else KNOWLEDGE_CORPUS


class HsCode(models.Model):
    """One line of an HS nomenclature (2, 4, 6, 8 or 10 digits) in one language."""

    code = models.CharField(max_length=10)
    language = models.CharField(max_length=8)
    description = models.TextField()
    level = models.PositiveSmallIntegerField()  # number of digits
    parent_code = models.CharField(max_length=10, blank=True)
    section = models.CharField(max_length=8, blank=True)

    class Meta:
        verbose_name = "HS code"
        verbose_name_plural = "HS codes"
        constraints = [models.UniqueConstraint(fields=["code", "language"], name="hs_code_language_unique")]
        indexes = [
            # Used by: lookups of a declared code's existence and its parents (verdicts, review pages).
            models.Index(fields=["code"], name="hs_code_code_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.code} {self.description[:60]}"


class KnowledgeEntry(models.Model):
    """A piece of evidence for an HS code: a nomenclature line or an approved (reference) declaration.

    Its `text` is what is embedded (corpus `knowledge_corpus(text)`); neighbours found for a
    declaration item are KnowledgeEntry rows, and their codes are voted on.
    """

    class Source(models.TextChoices):
        NOMENCLATURE = "nomenclature", "Nomenclature"
        REFERENCE = "reference", "Approved declaration"

    source = models.CharField(max_length=16, choices=Source.choices)
    hs_code = models.CharField(max_length=10)
    chapter = models.CharField(max_length=2)
    language = models.CharField(max_length=8, blank=True)
    # The text that is embedded (normalised; for nomenclature lines enriched with their parents' words).
    text = models.TextField()
    # The text as it was given, shown to reviewers as evidence.
    display_text = models.TextField()
    # For nomenclature evidence: the HsCode line it comes from.
    hs_code_line = models.ForeignKey(HsCode, null=True, blank=True, on_delete=models.CASCADE, related_name="entries")
    # For reference evidence: the identity key of the declaration it comes from (DeclarationItem.identity_key
    # or the reference file row's), so the same declaration imported or approved again is one entry.
    identity_key = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "knowledge entries"
        constraints = [
            # A nomenclature line is one piece of evidence, however often it is loaded.
            models.UniqueConstraint(
                fields=["hs_code_line"], condition=models.Q(source="nomenclature"), name="knowledge_one_per_hs_line"
            ),
            # An approved declaration is one piece of evidence, however often it is imported or approved.
            models.UniqueConstraint(
                fields=["identity_key"], condition=models.Q(source="reference"), name="knowledge_one_per_reference"
            ),
        ]
        indexes = [
            # Used by: the re-indexer's keyset walk (embeddings corpus fetch_texts) and chapter-filtered searches.
            models.Index(fields=["chapter", "id"], name="knowledge_chapter_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.hs_code} ({self.source}) {self.display_text[:60]}"


class GlossaryTerm(models.Model):
    """A staff-editable abbreviation or synonym applied by normalisation before embedding ("BT" -> "bluetooth")."""

    term = models.CharField(max_length=100)
    replacement = models.CharField(max_length=200)
    # Empty: applies to every language.
    language = models.CharField(max_length=8, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["term", "language"], name="glossary_term_language_unique")]

    def __str__(self) -> str:
        return f"{self.term} -> {self.replacement}"


class DeclarationBatch(models.Model):
    """One submission of declaration items (a file, an API call, or manual entry) and how to judge it."""

    class Source(models.TextChoices):
        FILE = "file", "File upload"
        API = "api", "API"
        MANUAL = "manual", "Manual"
        COMMAND = "command", "Command line"

    class Mode(models.TextChoices):
        CHECK = "check", "Check declared codes"
        FILL = "fill", "Fill in missing codes"
        SUGGEST = "suggest", "Suggest a code for every item"

    class Status(models.TextChoices):
        IMPORTING = "importing", "Importing"
        PROCESSING = "processing", "Processing"
        DONE = "done", "Done"
        FAILED = "failed", "Import failed"

    source = models.CharField(max_length=16, choices=Source.choices)
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.CHECK)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.IMPORTING)
    file_name = models.CharField(max_length=255, blank=True)
    # Non-empty for an uploaded file: it waits in PostgreSQL (UploadedFileChunk rows, UPLOAD_STORED_IN_DATABASE)
    # for the import task, which any worker can run; no filesystem is shared between web and workers.
    upload_path = models.CharField(max_length=500, blank=True)
    # Reference batches hold approved historical declarations: they become knowledge, not work.
    is_reference = models.BooleanField(default=False)
    rows_read = models.PositiveIntegerField(default=0)
    items_created = models.PositiveIntegerField(default=0)
    duplicates = models.PositiveIntegerField(default=0)
    rows_rejected = models.PositiveIntegerField(default=0)
    # Why a whole import failed (unreadable file); bad rows are ImportRowError rows instead.
    failure_reason = models.TextField(blank=True)
    # Import runs started (or re-queued by the sweeper) and when the last one was: a batch left in
    # `importing` by a lost worker is resumed, and failed with the reason after MAX_IMPORT_ATTEMPTS.
    import_attempts = models.PositiveSmallIntegerField(default=0, db_default=0)
    import_attempted_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="declaration_batches"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "declaration batches"
        # Uploading a reference batch adds to the knowledge base that steers auto-pass verdicts: a right of its
        # own (curators), apart from add_declarationbatch, which submits declarations to be checked.
        permissions = [("upload_reference_batch", "Can upload reference batches (they join the knowledge base)")]

    def __str__(self) -> str:
        return f"batch {self.pk} ({self.get_source_display()}, {self.file_name or self.mode})"


class DeclarationItem(models.Model):
    """One line of a declaration: what is declared, and where it is in the verification work queue."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSING = "processing", "Processing"
        VERIFIED = "verified", "Verified"
        FAILED = "failed", "Failed"

    batch = models.ForeignKey(DeclarationBatch, on_delete=models.CASCADE, related_name="items")
    # The declarant's keys: the declaration number and the item's line number in it.
    external_id = models.CharField(max_length=64, blank=True)
    item_no = models.CharField(max_length=16, blank=True)
    # sha256 hex of (external_id, item_no), or of the item's content when it has no id: the same item
    # submitted again by the same account (in any batch) is recognised and not duplicated.
    identity_key = models.CharField(max_length=64)
    # The account that submitted it (its batch's creator; none for the command line): identity keys are
    # scoped to it, so another submitter's identical id is their own item, judged on its own.
    submitter = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.PROTECT, related_name="submitted_declaration_items"
    )
    # A re-submission of a known item with changed content is a new version, judged again; the earlier
    # versions keep their verdicts as the item's history. content_hash tells changed from identical.
    version = models.PositiveIntegerField(default=1, db_default=1)
    content_hash = models.CharField(max_length=64, blank=True, default="", db_default="")
    product_name = models.CharField(max_length=500, blank=True)
    spec = models.CharField(max_length=500, blank=True)
    description_raw = models.TextField()
    description_normalized = models.TextField(blank=True)
    declared_code = models.CharField(max_length=10, blank=True)
    origin = models.CharField(max_length=8, blank=True)
    quantity = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    unit = models.CharField(max_length=16, blank=True)
    value = models.DecimalField(max_digits=18, decimal_places=2, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    language = models.CharField(max_length=8, blank=True)
    # Columns the importer does not know, kept as given.
    extra = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    claimed_at = models.DateTimeField(null=True, blank=True)
    # The task (Celery task id) that claimed it: a message redelivered after its worker died takes it back.
    claimed_by = models.CharField(max_length=64, blank=True, default="", db_default="")
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # Used by: the importer's INSERT ... ON CONFLICT DO NOTHING (re-imported items are skipped) and
            # its lookup of a key's latest version. NULLS NOT DISTINCT: command-line items share one scope.
            models.UniqueConstraint(fields=["submitter", "identity_key", "version"],
                                    name="declaration_item_submitter_identity_version_unique",
                                    nulls_distinct=False),
        ]
        indexes = [
            # Used by: pipeline.claim_items (status = pending ORDER BY id ... FOR UPDATE SKIP LOCKED) and the
            # sweeper (status = processing AND claimed_at < cutoff). Partial: verified items leave the index.
            models.Index(
                fields=["status", "id"], name="declaration_item_queue_idx",
                condition=models.Q(status__in=["pending", "processing"]),
            ),
            # Used by: batch pages and the API (items of one batch, in order; counts by status).
            models.Index(fields=["batch", "status"], name="declaration_item_batch_idx"),
        ]

    def __str__(self) -> str:
        key = f"{self.external_id}/{self.item_no}" if self.external_id else f"#{self.pk}"
        return f"{key} {self.description_raw[:50]}"


class Verdict(models.Model):
    """What the verifier concluded about one item, with the evidence behind it."""

    class Tier(models.TextChoices):
        AUTO_PASS = "auto_pass", "Auto-pass"
        MANUAL_REVIEW = "manual_review", "Manual review"
        WARNING = "warning", "Warning"

    item = models.OneToOneField(DeclarationItem, on_delete=models.CASCADE, related_name="verdict")
    recommended_code = models.CharField(max_length=10, blank=True)
    recommended_level = models.PositiveSmallIntegerField(null=True, blank=True)  # digits: 2, 4 or 6
    confidence = models.FloatField(default=0.0)
    # Vote share of the best code minus the second best, at the recommended level.
    margin = models.FloatField(default=0.0)
    # Cosine similarity of the nearest piece of evidence; low means the description is unlike anything known.
    best_similarity = models.FloatField(null=True, blank=True)
    tier = models.CharField(max_length=16, choices=Tier.choices)
    # Higher is riskier: the review queue's order.
    risk = models.FloatField(default=0.0)
    # [{"code": "declared_code_contradicted", "reason": "..."}]
    anomalies = models.JSONField(default=list, blank=True)
    # {"neighbours": [{"entry_id", "code", "source", "score", "text"}], "alternatives": [{"code", "share"}]}
    evidence = models.JSONField(default=dict, blank=True)
    # The code this verdict settles on for the item's mode (declared, filled in, or suggested).
    final_code = models.CharField(max_length=10, blank=True)
    space = models.ForeignKey("embeddings.EmbeddingSpace", null=True, blank=True, on_delete=models.SET_NULL)
    # Set by review: the tier the officer settled, so the queue shows what is left.
    reviewed = models.BooleanField(default=False)
    # How many times the pipeline wrote this verdict: 1 unless the item was judged twice (fault tests check it).
    writes = models.PositiveIntegerField(default=1, db_default=1)
    # What was judged and against what (verifier.reuse.judgement_keys): the description, mode and declared code,
    # the knowledge base's version, the thresholds and the judging code. Another item with the same key gets a
    # copy of this verdict instead of a new search and vote.
    judgement_key = models.BinaryField(max_length=32, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            # Used by: verifier.reuse.reusable_verdicts (one lookup per chunk of items).
            models.Index(fields=["judgement_key"], name="verdict_judgement_key_idx",
                         condition=models.Q(judgement_key__isnull=False)),
            # Used by: the review queue (unreviewed items of one tier, riskiest first).
            models.Index(
                fields=["tier", "-risk"], name="verdict_review_queue_idx", condition=models.Q(reviewed=False)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_tier_display()}: {self.recommended_code or '-'} ({self.confidence:.2f})"


class ImportRowError(models.Model):
    """A row an import could not use: where it was, why, and what it said."""

    batch = models.ForeignKey(DeclarationBatch, on_delete=models.CASCADE, related_name="row_errors")
    # 1-based data row number (CSV: not counting the header; JSON: array position; JSON Lines: line number).
    row_number = models.PositiveIntegerField()
    reason = models.TextField()
    raw = models.TextField(blank=True)

    class Meta:
        indexes = [
            # Used by: the batch's error download (its errors in row order).
            models.Index(fields=["batch", "row_number"], name="import_row_error_batch_idx"),
        ]

    def __str__(self) -> str:
        return f"row {self.row_number}: {self.reason}"


class Review(models.Model):
    """One reviewer decision on an item; append-only: rows are never updated or deleted."""

    class Action(models.TextChoices):
        CONFIRM_DECLARED = "confirm_declared", "Confirmed the declared code"
        ACCEPT_RECOMMENDATION = "accept_recommendation", "Accepted the recommendation"
        SET_CODE = "set_code", "Set another code"
        REJECT = "reject", "Rejected"

    item = models.ForeignKey(DeclarationItem, on_delete=models.PROTECT, related_name="reviews")
    reviewer = models.ForeignKey("auth.User", on_delete=models.PROTECT, related_name="declaration_reviews")
    action = models.CharField(max_length=32, choices=Action.choices)
    from_code = models.CharField(max_length=10, blank=True)
    to_code = models.CharField(max_length=10, blank=True)
    reason = models.TextField(blank=True)
    # The tier the verdict had when it was reviewed: calibration compares it with the outcome.
    tier_at_review = models.CharField(max_length=16, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            # Used by: an item's audit trail (its reviews, oldest first) and calibrate_thresholds.
            models.Index(fields=["item", "created_at"], name="review_item_idx"),
        ]

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None:
            raise ValueError("reviews are append-only: a recorded review cannot be changed")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("reviews are append-only: a recorded review cannot be deleted")

    def __str__(self) -> str:
        return f"{self.get_action_display()} {self.from_code} -> {self.to_code}"


class RoutingThreshold(models.Model):
    """Routing thresholds for one embedding space, optionally for one HS chapter (staff-editable)."""

    space = models.ForeignKey("embeddings.EmbeddingSpace", on_delete=models.CASCADE, related_name="routing_thresholds")
    # Empty: every chapter without its own row.
    chapter = models.CharField(max_length=2, blank=True)
    # Auto-pass needs at least this confidence in the recommendation.
    auto_pass_min_confidence = models.FloatField()
    # Below this top-2 margin the item goes to manual review, whatever the confidence.
    review_margin = models.FloatField()
    # A best similarity below this marks the description as unlike anything known.
    novelty_max_similarity = models.FloatField()
    # Check mode (verifier.routing.route_check); empty: the model profile's default.
    check_min_declared_share = models.FloatField(
        null=True, blank=True,
        help_text="Auto-pass needs the declared heading to hold at least this share of the vote.")
    check_min_similarity = models.FloatField(
        null=True, blank=True, help_text="Auto-pass needs the closest evidence at least this similar.")
    check_max_heading_gap = models.FloatField(
        null=True, blank=True,
        help_text="Auto-pass needs the declared heading's closest line within this of the closest.")
    contradiction_chapter_gap = models.FloatField(
        null=True, blank=True, help_text="Warning when the declared chapter's closest line is this much less similar.")
    contradiction_heading_gap = models.FloatField(
        null=True, blank=True, help_text="Warning when the declared heading's closest line is this much less similar.")
    calibrated_at = models.DateTimeField(null=True, blank=True)
    calibration_note = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["space", "chapter"], name="routing_threshold_space_chapter_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.space_id}/{self.chapter or 'all'}: auto>={self.auto_pass_min_confidence:.2f}"


class HsPrototypeModel(models.Model):
    """Prototype vectors of one embedding space: the normalised centroid of each chapter's and heading's evidence.

    Fitted from the knowledge base's own vectors (verifier.prototypes.fit_prototypes) and refitted
    when the knowledge base of the space changes (its fingerprint no longer matches).
    """

    space = models.OneToOneField("embeddings.EmbeddingSpace", on_delete=models.CASCADE, related_name="hs_prototypes")
    # Order-independent digest of the (object, text) pairs the prototypes were fitted on.
    fingerprint = models.CharField(max_length=64)
    entries = models.PositiveIntegerField()  # how many evidence vectors they were fitted on
    # numpy .npz: per level, the codes ("codes_2", "codes_4") and their unit centroids ("vectors_2", "vectors_4").
    payload = models.BinaryField()
    fitted_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"HS prototypes of space {self.space_id} ({self.entries} entries)"


class UploadedFileChunk(models.Model):
    """A piece of an uploaded declaration file, kept in PostgreSQL until a worker has imported it.

    The web writes the file here in the same transaction as its batch (a failed upload leaves neither);
    whichever worker takes the import task reads the pieces back in order. Deleted once imported.
    """

    # No index of its own: the unique constraint below starts with the batch.
    batch = models.ForeignKey(DeclarationBatch, on_delete=models.CASCADE, related_name="upload_chunks", db_index=False)
    position = models.PositiveIntegerField()
    data = models.BinaryField()

    class Meta:
        constraints = [
            # Used by: the import task's read of a batch's pieces in order.
            models.UniqueConstraint(fields=["batch", "position"], name="uploaded_file_chunk_position_unique"),
        ]

    def __str__(self) -> str:
        return f"piece {self.position} of batch {self.batch_id}'s upload"


class KnowledgeVersion(models.Model):
    """One row whose `version` grows whenever the knowledge base's entries or codes change (none yet: 0).

    Kept by statement-level triggers on verifier_knowledgeentry and verifier_hscode (migration 0012), so bulk
    loads, admin edits and approvals all count; with the vectors' own counter
    (embeddings.selectors.corpus_version) it says whether an earlier verdict was judged against the same
    knowledge base.
    """

    version = models.BigIntegerField(default=0)
