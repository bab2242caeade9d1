"""Writes: the FAQ library, its vectors and classifier, inquiries and their answers."""
from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.core.mail import send_mail
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from common.queueing import queue_on_commit
from embeddings import centring
from embeddings.errors import EmbeddingError
from embeddings.models import EmbeddingSpace, LanguageMean
from embeddings.selectors import objects_without_current_vector, stored_vectors
from embeddings.services import embed_documents, embed_queries, index_documents
from embeddings.store import active_space, drop_corpus, store_vectors

from . import selectors
from .languages import detect_language
from .matching import (
    MIN_FAQS_FOR_CLASSIFIER,
    MIN_WORDINGS_PER_FAQ_FOR_CLASSIFIER,
    Match,
    array_to_bytes,
    fit_classifier,
)
from .models import LIVE_NAMESPACE, Faq, FaqClassifier, FaqWording, Inquiry, OutgoingReply

logger = logging.getLogger(__name__)

MAX_QUESTION_LENGTH = 1000
# Precision the classifier's confidence threshold is calibrated for (cross-validated on the library).
# Above the 97% goal: wordings are embedded as documents, customers' questions as queries, and the
# threshold learned on the former loosens a little on the latter.
TARGET_ANSWER_PRECISION = 0.98
INDEX_BATCH_SIZE = 64  # texts per embedding call: small enough for a busy CPU endpoint
# Wordings read per look-up of which ones lack a current vector (one id array per query).
PENDING_SCAN_CHUNK = 5000
# The library is re-centred (every wording vector stored again) when a language's document mean moved
# further than this. Adding one wording to n moves the mean by about 0.5/n (e5 vectors sit about 0.5 from
# their language's mean), so a 1,000-wording library is re-centred about every 40 new wordings.
MEAN_SHIFT_TOLERANCE = 0.02
MAX_MATCH_ATTEMPTS = 20

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


# --- the library -------------------------------------------------------------------


@dataclass
class ImportReport:
    faqs_created: int = 0
    faqs_updated: int = 0
    wordings_created: int = 0
    translations_written: int = 0
    errors: list[str] = field(default_factory=list)  # "row N: what is wrong"


@transaction.atomic
def import_faqs(*, rows: Iterable[dict[str, str]], namespace: str = LIVE_NAMESPACE) -> ImportReport:
    """Create or update FAQs from CSV rows (faq_id, question[, answer, category, language]).

    Rows sharing a faq_id are wordings of one FAQ, in any language: the first gives its
    question and its own language; each row's answer is the FAQ's answer in that row's
    language (given, else guessed from its question), so rows in another language carry
    the translations customers asking in that language are shown. Bad rows are reported
    with their row number (the header is row 1) and skipped; everything else is imported.
    Indexing is queued after commit for the live namespace.
    """
    report = ImportReport()
    grouped: dict[str, list[dict[str, str]]] = {}
    for row_number, row in enumerate(rows, start=2):
        faq_id = (row.get("faq_id") or "").strip()
        question = (row.get("question") or "").strip()
        if not faq_id:
            report.errors.append(f"row {row_number}: faq_id is empty")
            continue
        if not question:
            report.errors.append(f"row {row_number}: question is empty (faq_id {faq_id!r})")
            continue
        if len(question) > MAX_QUESTION_LENGTH:
            report.errors.append(f"row {row_number}: question is longer than {MAX_QUESTION_LENGTH} characters")
            continue
        if len(faq_id) > 100:
            report.errors.append(f"row {row_number}: faq_id is longer than 100 characters")
            continue
        language = (row.get("language") or "").strip().lower() or detect_language(question)
        if len(language) > 16:
            report.errors.append(f"row {row_number}: language {language[:20]!r} is longer than 16 characters")
            continue
        grouped.setdefault(faq_id, []).append({**row, "question": question, "language": language,
                                               "answer": (row.get("answer") or "").strip()})

    existing = {faq.external_id: faq for faq in Faq.objects.filter(namespace=namespace, external_id__in=list(grouped))}
    new_faqs = []
    answers_by_faq: dict[str, dict[str, str]] = {}
    for external_id, group in grouped.items():
        # One answer per language: the first non-empty one of that language wins.
        answers: dict[str, str] = {}
        for row in group:
            if row["answer"]:
                answers.setdefault(row["language"], row["answer"])
        answers_by_faq[external_id] = answers
        category = next((row.get("category", "").strip() for row in group if (row.get("category") or "").strip()), "")
        language = group[0]["language"]
        faq = existing.get(external_id)
        if faq is None:
            new_faqs.append(Faq(namespace=namespace, external_id=external_id, question=group[0]["question"],
                                answer=answers.get(language, ""), category=category, language=language))
        else:
            faq.question, faq.answer = group[0]["question"], answers.get(language) or faq.answer
            faq.category, faq.language = category or faq.category, language
            faq.save()
            report.faqs_updated += 1
    Faq.objects.bulk_create(new_faqs, batch_size=1000)
    report.faqs_created = len(new_faqs)
    faq_by_external_id = {**existing, **{faq.external_id: faq for faq in new_faqs}}
    report.translations_written = save_translations({
        faq_by_external_id[external_id].id: {language: answer for language, answer in answers.items()
                                             if language != faq_by_external_id[external_id].language}
        for external_id, answers in answers_by_faq.items()
    })

    known_texts = set(
        FaqWording.objects.filter(faq__in=list(existing.values())).values_list("faq_id", "text")
    )
    existing_ids = {faq.id for faq in existing.values()}
    new_wordings = []
    for external_id, group in grouped.items():
        faq = faq_by_external_id[external_id]
        for position, row in enumerate(group):
            if (faq.id, row["question"]) in known_texts:
                continue
            known_texts.add((faq.id, row["question"]))
            is_question = position == 0 and faq.id not in existing_ids
            new_wordings.append(FaqWording(
                faq=faq, text=row["question"], language=row["language"],
                source=FaqWording.Source.QUESTION if is_question else FaqWording.Source.IMPORTED,
            ))
    FaqWording.objects.bulk_create(new_wordings, batch_size=2000)
    report.wordings_created = len(new_wordings)
    if namespace == LIVE_NAMESPACE:
        queue_library_changed()
    return report


def save_translations(answers_by_faq_id: dict[int, dict[str, str]]) -> int:
    """Insert or replace each FAQ's answer in other languages than its own, in one statement; returns rows written."""
    faq_ids, languages, answers = [], [], []
    for faq_id, answers_of_faq in answers_by_faq_id.items():
        for language, answer in answers_of_faq.items():
            faq_ids.append(faq_id)
            languages.append(language)
            answers.append(answer)
    if not faq_ids:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO faq_faqtranslation (faq_id, language, answer)
            SELECT * FROM unnest(%s::bigint[], %s::varchar[], %s::text[])
            ON CONFLICT (faq_id, language) DO UPDATE SET answer = EXCLUDED.answer
            """,
            [faq_ids, languages, answers],
        )
    return len(faq_ids)


def queue_library_changed() -> None:
    """After commit: embed new wordings, then refit the classifier (a lost message is swept up within a minute)."""
    queue_on_commit("faq.index_pending_wordings", kwargs={"refit": True})


def pending_wordings(*, namespace: str, limit: int) -> list[tuple[int, str]]:
    """Wordings of active FAQs with no vector in the active space, or whose text changed since it was embedded."""
    space = active_space()
    corpus = selectors.corpus_for(namespace)
    wordings = FaqWording.objects.filter(faq__namespace=namespace, faq__active=True).order_by("id")
    pending: list[tuple[int, str]] = []
    after_id = 0
    while len(pending) < limit:
        texts = dict(wordings.filter(id__gt=after_id).values_list("id", "text")[:PENDING_SCAN_CHUNK])
        if not texts:
            break
        pending.extend((wording_id, texts[wording_id])
                       for wording_id in objects_without_current_vector(space=space, corpus=corpus, texts=texts))
        after_id = max(texts)
    return pending[:limit]


def index_pending_wordings(*, refit: bool = False) -> int:
    """Embed the live library's wordings without a current vector, then refit the classifier when any were
    embedded (or `refit`); returns how many were embedded."""
    indexed = index_wordings()
    if indexed or refit:
        refit_classifier()
    return indexed


def index_wordings(*, namespace: str = LIVE_NAMESPACE, limit: int = 100_000) -> int:
    """Embed and store every pending wording of the namespace; returns how many were indexed.

    Raises EmbeddingError when the endpoint is down; what was stored stays stored.
    """
    space = active_space()
    corpus = selectors.corpus_for(namespace)
    indexed = 0
    while indexed < limit:
        batch = pending_wordings(namespace=namespace, limit=min(INDEX_BATCH_SIZE, limit - indexed))
        if not batch:
            break
        ids, texts = [row[0] for row in batch], [row[1] for row in batch]
        if namespace == LIVE_NAMESPACE:
            # Centred by the corpus's prepare_vectors (faq.embedding_registration); also written into a space
            # being built.
            index_documents(corpus=corpus, object_ids=ids, texts=texts)
        else:
            vectors = centred_wording_vectors(space, ids, embed_documents(texts, space=space), namespace=namespace)
            store_vectors(space=space, corpus=corpus, object_ids=ids, texts=texts, vectors=vectors)
        indexed += len(batch)
    # Evaluation namespaces get no HNSW index: an FAQ library is small enough for exact search
    # (8,000 wordings: a few ms per question with the vectors cast once, embeddings.selectors.nearest_neighbours).
    # Every pass: traffic in a new language can start centring without any wording changing.
    indexed += recentre_library(namespace=namespace, space=space)
    return indexed


def centred_wording_vectors(space: EmbeddingSpace, wording_ids: list[int], vectors: np.ndarray, *,
                            namespace: str) -> np.ndarray:
    """Wording vectors as stored: each minus its language's document mean in this space (raw before any mean)."""
    means = centring.language_means(space=space, scope=selectors.corpus_for(namespace),
                                    side=LanguageMean.Side.DOCUMENT)
    languages_of = dict(FaqWording.objects.filter(id__in=wording_ids).values_list("id", "language"))
    return centring.centre(vectors, [languages_of.get(wording_id, "") for wording_id in wording_ids],
                           centring.usable(means))


def recentre_library(*, namespace: str, space: EmbeddingSpace) -> int:
    """Centre the library per language where languages meet; store every wording vector again when the
    means it is centred with moved (or centring starts or stops). Returns how many vectors were stored again.

    Centring is for comparing languages: it is on once two languages have usable means, from the library
    (its wordings) or the traffic (its questions). A library in one language asked in that language only
    stays raw (BANKING77, English only: centring cost 1.8 points of top-1 there, README).
    Document means: the mean of the library's wording vectors per language; the stored vectors are always
    centred with the stored means, so both change together (one transaction). Query means: the wordings
    written as questions, for library languages traffic has not taught yet (traffic keeps them current,
    learn_question_means). Raw vectors come from the embedding cache (no model call for known texts).
    """
    corpus = selectors.corpus_for(namespace)
    wordings = list(FaqWording.objects.filter(faq__namespace=namespace, faq__active=True).order_by("id")
                    .values_list("id", "text", "language"))
    if not wordings:
        return 0
    ids, texts, languages = zip(*wordings)
    counts = Counter(languages)
    library_languages = {language for language, count in counts.items() if count >= centring.MIN_SAMPLES}
    stored = centring.usable(centring.language_means(space=space, scope=corpus, side=LanguageMean.Side.DOCUMENT))
    query_means = centring.language_means(space=space, scope=corpus, side=LanguageMean.Side.QUERY)
    untaught = [language for language in library_languages
                if query_means.get(language, (None, 0))[1] < centring.MIN_SAMPLES]
    if untaught:
        rows = [position for position, language in enumerate(languages) if language in untaught]
        questions = embed_texts_in_batches([texts[p] for p in rows], space=space, side="query")
        centring.learn_means(space=space, scope=corpus, side=LanguageMean.Side.QUERY, vectors=questions,
                             languages=[languages[p] for p in rows])
        query_means = centring.language_means(space=space, scope=corpus, side=LanguageMean.Side.QUERY)
    multilingual = len(library_languages | set(centring.usable(query_means))) >= 2
    if not multilingual and not stored:
        return 0  # stored raw, and staying so
    raw = embed_texts_in_batches(list(texts), space=space, side="document")
    library_means = {language: (mean, count) for language, (mean, count) in centring.means_of(raw, languages).items()
                     if multilingual and count >= centring.MIN_SAMPLES}
    shift = centring.mean_shift(stored, {language: mean for language, (mean, _) in library_means.items()})
    if shift <= MEAN_SHIFT_TOLERANCE:
        return 0
    with transaction.atomic():
        centring.replace_means(space=space, scope=corpus, side=LanguageMean.Side.DOCUMENT, means=library_means)
        means = {language: mean for language, (mean, _) in library_means.items()}
        store_vectors(space=space, corpus=corpus, object_ids=list(ids), texts=list(texts),
                      vectors=centring.centre(raw, languages, means))
    logger.info("faq library %s %s (%d wordings; means moved %.3f)", namespace,
                "re-centred" if library_means else "stored raw again", len(ids), shift)
    return len(ids)


def embed_texts_in_batches(texts: list[str], *, space: EmbeddingSpace, side: str) -> np.ndarray:
    """Raw vectors through the cache, a few hundred per call (a busy CPU endpoint times big requests out)."""
    parts = [
        embed_documents(texts[start:start + 256], space=space) if side == "document"
        else embed_queries(texts[start:start + 256], task="faq", space=space)
        for start in range(0, len(texts), 256)
    ]
    return np.vstack(parts) if parts else np.zeros((0, space.dimensions), dtype=np.float32)


def learn_question_means(*, questions: list[str], namespace: str = LIVE_NAMESPACE) -> None:
    """Fold customers' questions into the query-side means of their languages (vectors from the cache)."""
    space = active_space()
    vectors = embed_queries(questions, task="faq", space=space)
    centring.learn_means(space=space, scope=selectors.corpus_for(namespace), side=LanguageMean.Side.QUERY,
                         vectors=vectors, languages=[detect_language(question) for question in questions])


def library_fingerprint(*, namespace: str) -> str:
    """Changes when the library's wordings or the means its vectors are centred with change (a refit is due)."""
    digest = hashlib.sha256()
    for wording_id, faq_id in selectors.faq_library_fingerprint_rows(namespace=namespace).iterator(chunk_size=5000):
        digest.update(f"{wording_id}:{faq_id};".encode())
    for stamp in (LanguageMean.objects.filter(scope=selectors.corpus_for(namespace), space=active_space(),
                                              side=LanguageMean.Side.DOCUMENT)
                  .order_by("language").values_list("language", "updated_at")):
        digest.update(f"{stamp[0]}@{stamp[1].isoformat()};".encode())
    return digest.hexdigest()


def refit_classifier(*, namespace: str = LIVE_NAMESPACE, force: bool = False) -> FaqClassifier | None:
    """Fit the classifier over the namespace's wording vectors when the library changed since the last fit.

    Removes the classifier when the library is too small to learn from (cosine decides alone then).
    """
    space = active_space()
    fingerprint = library_fingerprint(namespace=namespace)
    current = FaqClassifier.objects.filter(space=space, namespace=namespace).first()
    if current is not None and current.library_fingerprint == fingerprint and not force:
        return current
    counts = selectors.wordings_per_faq(namespace=namespace)
    usable = {faq_id: n for faq_id, n in counts.items() if n > 0}
    if (len(usable) < MIN_FAQS_FOR_CLASSIFIER
            or sum(usable.values()) / len(usable) < MIN_WORDINGS_PER_FAQ_FOR_CLASSIFIER):
        FaqClassifier.objects.filter(space=space, namespace=namespace).delete()
        return None
    wording_ids, faq_ids, vectors = wording_vectors(namespace=namespace, space_id=space.id)
    texts = dict(FaqWording.objects.filter(id__in=wording_ids).values_list("id", "text"))
    # The wordings as customers would ask them (through the embedding cache: a refit re-embeds only new ones),
    # centred as questions are when matched.
    questions = [texts[wording_id] for wording_id in wording_ids]
    query_vectors = selectors.centred_questions(
        space=space, namespace=namespace, questions=questions,
        vectors=embed_texts_in_batches(questions, space=space, side="query"))
    classifier, report = fit_classifier(vectors=vectors, labels=faq_ids, target_precision=TARGET_ANSWER_PRECISION,
                                        query_vectors=query_vectors)
    row, _ = FaqClassifier.objects.update_or_create(
        space=space, namespace=namespace,
        defaults={
            "faq_ids": classifier.faq_ids, "weights": array_to_bytes(classifier.weights),
            "bias": array_to_bytes(classifier.bias), "confidence_threshold": classifier.confidence_threshold,
            "library_fingerprint": fingerprint, "wording_count": len(wording_ids), "cross_validation": report,
        },
    )
    logger.info("faq classifier refit for %s: %s", namespace, report)
    return row


def wording_vectors(*, namespace: str, space_id: int) -> tuple[list[int], list[int], np.ndarray]:
    """(wording ids, their FAQ ids, their vectors) of the namespace's active FAQs, in wording id order."""
    space = EmbeddingSpace.objects.get(id=space_id)
    wordings = list(FaqWording.objects.filter(faq__namespace=namespace, faq__active=True).order_by("id")
                    .values_list("id", "faq_id"))
    stored_ids, stored = stored_vectors(space=space, corpus=selectors.corpus_for(namespace),
                                        object_ids=[wording_id for wording_id, _ in wordings])
    row_of = {wording_id: row for row, wording_id in enumerate(stored_ids)}
    wordings = [(wording_id, faq_id) for wording_id, faq_id in wordings if wording_id in row_of]
    vectors = stored[[row_of[wording_id] for wording_id, _ in wordings]]
    if len(vectors):
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [wording_id for wording_id, _ in wordings], [faq_id for _, faq_id in wordings], vectors


@transaction.atomic
def delete_namespace(*, namespace: str) -> None:
    """Remove an evaluation namespace: its FAQs, vectors and classifier."""
    if namespace == LIVE_NAMESPACE:
        raise ValueError("refusing to delete the live FAQ library")
    corpus = selectors.corpus_for(namespace)
    drop_corpus(corpus=corpus)
    centring.delete_means(scope=corpus)
    FaqClassifier.objects.filter(namespace=namespace).delete()
    Faq.objects.filter(namespace=namespace).delete()


@transaction.atomic
def add_wording(*, faq_id: int, text: str, source: str = FaqWording.Source.STAFF) -> FaqWording:
    faq = Faq.objects.get(id=faq_id)
    wording = FaqWording.objects.create(faq=faq, text=text.strip(), language=detect_language(text), source=source)
    if faq.namespace == LIVE_NAMESPACE:
        queue_library_changed()
    return wording


# --- inquiries -----------------------------------------------------------------------


def client_fingerprint(*, address: str) -> str:
    return hashlib.sha256(f"{settings.SECRET_KEY}:{address}".encode()).hexdigest()


def submit_inquiry(*, question: str, name: str = "", contact: str = "", fingerprint: str = "") -> Inquiry:
    """Save the inquiry first (it is never lost), then try to match it at once.

    When the embedding endpoint is down the inquiry stays 'received' and unmatched;
    the sweeper (tasks.faq.match_pending_inquiries) matches it later.
    """
    inquiry = Inquiry.objects.create(
        question=question.strip(), name=name.strip(), contact=contact.strip(),
        language=detect_language(question), client_fingerprint=fingerprint,
    )
    try:
        match = selectors.match_questions(questions=[inquiry.question])[0]
    except EmbeddingError as error:
        logger.warning("inquiry %s saved unmatched, embedding unavailable: %s", inquiry.id, error)
        Inquiry.objects.filter(id=inquiry.id).update(match_attempts=1)
        inquiry.match_attempts = 1
        return inquiry
    learn_question_means(questions=[inquiry.question])
    return record_match(inquiry=inquiry, match=match, customer_waiting=True)


def record_match(*, inquiry: Inquiry, match: Match, customer_waiting: bool) -> Inquiry:
    """Store a match; a confident one answers the inquiry.

    customer_waiting: the customer is on the page and can pick a suggestion or escalate.
    Otherwise (matched later by the worker) an unconfident match goes to staff, and a
    confident one is mailed to the customer.
    """
    faqs = selectors.faqs_by_id([candidate.faq_id for candidate in match.candidates])
    inquiry.suggestions = [
        {"faq_id": c.faq_id, "question": faqs[c.faq_id].question, "score": c.score, "confidence": c.confidence}
        for c in match.candidates if c.faq_id in faqs
    ]
    best = match.best
    inquiry.matched_faq_id = best.faq_id if best and match.answered else None
    inquiry.match_score = best.score if best else None
    inquiry.match_confidence = best.confidence if best else None
    inquiry.matched_at = timezone.now()
    if match.answered:
        inquiry.status = Inquiry.Status.ANSWERED
    elif not customer_waiting:
        inquiry.status = Inquiry.Status.ESCALATED
    inquiry.save(update_fields=["suggestions", "matched_faq", "match_score", "match_confidence", "matched_at",
                                "status"])
    if match.answered and not customer_waiting:
        answer, _ = faqs[best.faq_id].answer_in(inquiry.language)
        queue_reply(inquiry=inquiry, body=answer)
    return inquiry


def match_pending_inquiries(*, limit: int = 200) -> int:
    """Match received inquiries that could not be matched when they arrived; returns how many were matched.

    Claims rows with FOR UPDATE SKIP LOCKED (index inquiry_unmatched_idx), so two workers never match one
    inquiry; a failure leaves them unmatched for the next sweep.
    """
    with transaction.atomic():
        inquiries = list(
            Inquiry.objects.select_for_update(skip_locked=True)
            .filter(status=Inquiry.Status.RECEIVED, matched_at__isnull=True, match_attempts__lt=MAX_MATCH_ATTEMPTS)
            .order_by("created_at")[:limit]
        )
        if not inquiries:
            return 0
        try:
            matches = selectors.match_questions(questions=[inquiry.question for inquiry in inquiries])
        except EmbeddingError as error:
            logger.warning("%d inquiries still unmatched: %s", len(inquiries), error)
            Inquiry.objects.filter(id__in=[i.id for i in inquiries]).update(match_attempts=F("match_attempts") + 1)
            return 0
        learn_question_means(questions=[inquiry.question for inquiry in inquiries])
        for inquiry, match in zip(inquiries, matches):
            record_match(inquiry=inquiry, match=match, customer_waiting=False)
    return len(inquiries)


def escalate_inquiry(*, inquiry_id: int) -> Inquiry:
    inquiry = Inquiry.objects.get(id=inquiry_id)
    if inquiry.status in (Inquiry.Status.RECEIVED, Inquiry.Status.ANSWERED):
        inquiry.status = Inquiry.Status.ESCALATED
        inquiry.save(update_fields=["status"])
    return inquiry


def record_feedback(*, inquiry_id: int, helpful: bool) -> Inquiry:
    """The customer's verdict on the answer shown; an unhelpful answer goes to the staff inbox."""
    inquiry = Inquiry.objects.get(id=inquiry_id)
    inquiry.helpful = helpful
    if not helpful and inquiry.status != Inquiry.Status.CLOSED:
        inquiry.status = Inquiry.Status.ESCALATED
    inquiry.save(update_fields=["helpful", "status"])
    return inquiry


@transaction.atomic
def answer_inquiry(*, inquiry_id: int, answer: str, staff_user) -> Inquiry:
    """A staff answer: stored, the inquiry closed as answered, and mailed after commit when there is an address."""
    answer = answer.strip()
    if not answer:
        raise ValueError("the answer is empty")
    inquiry = Inquiry.objects.select_for_update().get(id=inquiry_id)
    inquiry.staff_answer, inquiry.answered_by, inquiry.answered_at = answer, staff_user, timezone.now()
    inquiry.status = Inquiry.Status.ANSWERED
    inquiry.save(update_fields=["staff_answer", "answered_by", "answered_at", "status"])
    queue_reply(inquiry=inquiry, body=answer)
    return inquiry


# --- replies: an outbox (OutgoingReply) written with the answer, mailed by a worker ------------------

# A reply is tried this many times, with backoff, before it is `failed` and shown as such in the inbox.
MAX_REPLY_ATTEMPTS = 6
# Waits after failed attempts: 1, 2, 4, 8, 16 minutes (capped at an hour).
REPLY_BACKOFF_SECONDS = 60
REPLY_BACKOFF_MAX_SECONDS = 3600
# A reply `sending` for longer than this was being sent by a worker that died: it is claimed again.
# The mail may then go out twice (at least once, never lost); an SMTP send takes seconds, not minutes.
REPLY_SENDING_TIMEOUT_SECONDS = 300


def queue_reply(*, inquiry: Inquiry, body: str) -> OutgoingReply | None:
    """Write the reply to the outbox in the caller's transaction and ask a worker to send it after commit.

    None when the contact is no email address (nothing to send). A lost task message costs a minute:
    the periodic job sends what is due.
    """
    if not _EMAIL.match(inquiry.contact):
        return None
    greeting = f"Hello {inquiry.name},\n\n" if inquiry.name else ""
    reply = OutgoingReply.objects.create(
        inquiry=inquiry, recipient=inquiry.contact, subject="Re: your question",
        body=f"{greeting}You asked:\n> {inquiry.question}\n\n{body}\n",
    )
    queue_on_commit("faq.send_pending_replies")
    return reply


def send_pending_replies(*, limit: int = 50) -> int:
    """Send the replies that are due; returns how many were sent.

    1. Claim due rows (pending and due, or `sending` past the timeout) with FOR UPDATE SKIP LOCKED,
       mark them `sending` and commit: two workers never send one reply at once.
    2. Send each; mark it `sent`, or count the attempt: back to `pending` after a backoff, `failed`
       with the error after MAX_REPLY_ATTEMPTS.
    """
    now = timezone.now()
    with transaction.atomic():
        replies = list(
            OutgoingReply.objects.select_for_update(skip_locked=True)
            .filter(Q(state=OutgoingReply.State.PENDING, next_attempt_at__lte=now)
                    | Q(state=OutgoingReply.State.SENDING,
                        claimed_at__lt=now - timezone.timedelta(seconds=REPLY_SENDING_TIMEOUT_SECONDS)))
            .order_by("next_attempt_at")[:limit]
        )
        # A send whose worker died on its last attempt is not tried again: staff see it failed.
        lost = [reply for reply in replies if reply.attempts >= MAX_REPLY_ATTEMPTS]
        OutgoingReply.objects.filter(id__in=[reply.id for reply in lost]).update(
            state=OutgoingReply.State.FAILED, last_error="the worker sending it was lost on its last attempt")
        replies = [reply for reply in replies if reply.attempts < MAX_REPLY_ATTEMPTS]
        # The attempt counts when it starts: a worker that dies while sending has used it.
        OutgoingReply.objects.filter(id__in=[reply.id for reply in replies]).update(
            state=OutgoingReply.State.SENDING, claimed_at=now, attempts=F("attempts") + 1)
    sent = 0
    for reply in replies:
        try:
            send_mail(subject=reply.subject, message=reply.body, from_email=settings.DEFAULT_FROM_EMAIL,
                      recipient_list=[reply.recipient])
        except Exception as error:  # noqa: BLE001 - any failure to send is retried, then shown to staff
            _count_failed_reply(reply=reply, error=f"{type(error).__name__}: {error}")
            continue
        OutgoingReply.objects.filter(id=reply.id).update(
            state=OutgoingReply.State.SENT, sent_at=timezone.now(), last_error="")
        sent += 1
    return sent


def _count_failed_reply(*, reply: OutgoingReply, error: str) -> None:
    attempts = reply.attempts + 1  # counted when it was claimed
    if attempts >= MAX_REPLY_ATTEMPTS:
        logger.error("reply %s to inquiry %s failed after %d attempts: %s", reply.id, reply.inquiry_id, attempts, error)
        OutgoingReply.objects.filter(id=reply.id).update(state=OutgoingReply.State.FAILED, attempts=attempts,
                                                         last_error=error[:2000])
        return
    delay = min(REPLY_BACKOFF_SECONDS * 2 ** (attempts - 1), REPLY_BACKOFF_MAX_SECONDS)
    logger.warning("reply %s not sent (attempt %d, next in %ds): %s", reply.id, attempts, delay, error)
    OutgoingReply.objects.filter(id=reply.id).update(
        state=OutgoingReply.State.PENDING, attempts=attempts, last_error=error[:2000],
        next_attempt_at=timezone.now() + timezone.timedelta(seconds=delay))


@transaction.atomic
def create_faq_from_inquiry(*, inquiry_id: int, staff_user, category: str = "") -> Faq:
    """Turn an answered inquiry into a new live FAQ (its question becomes the FAQ's first wording)."""
    inquiry = Inquiry.objects.select_for_update().get(id=inquiry_id)
    if not inquiry.staff_answer:
        raise ValueError(f"inquiry {inquiry_id} has no staff answer to turn into an FAQ")
    faq = Faq.objects.create(question=inquiry.question, answer=inquiry.staff_answer, category=category,
                             language=inquiry.language)
    FaqWording.objects.create(faq=faq, text=inquiry.question, language=inquiry.language,
                              source=FaqWording.Source.INQUIRY)
    inquiry.matched_faq = faq
    inquiry.save(update_fields=["matched_faq"])
    queue_library_changed()
    return faq


@transaction.atomic
def add_inquiry_as_wording(*, inquiry_id: int, faq_id: int) -> FaqWording:
    """The customer's words become a wording of an existing FAQ, matchable once embedded (within a minute)."""
    inquiry = Inquiry.objects.select_for_update().get(id=inquiry_id)
    wording = add_wording(faq_id=faq_id, text=inquiry.question, source=FaqWording.Source.INQUIRY)
    inquiry.matched_faq_id = faq_id
    inquiry.save(update_fields=["matched_faq"])
    return wording
