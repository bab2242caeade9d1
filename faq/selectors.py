"""Reads: matching questions to FAQs, thresholds, the staff inbox."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace

import numpy as np
from django.conf import settings
from django.db import connection
from django.db.models import CharField, Count, Exists, F, Func, OuterRef, Q, QuerySet, Value, Window
from django.db.models.functions import Lower, RowNumber

from common.recent_reads import RecentReads
from embeddings import centring
from embeddings.models import EmbeddingSpace, LanguageMean
from embeddings.profiles import default_thresholds_for
from embeddings.reranker import RerankerClient, RerankerError, get_reranker
from embeddings.selectors import nearest_neighbours
from embeddings.services import embed_queries
from embeddings.store import active_space

from .languages import detect_language
from .matching import (
    CLASSIFIER_COSINE_ALLOWANCE,
    DEFAULT_COSINE_MARGIN,
    LinearClassifier,
    Match,
    PairHeadModel,
    Thresholds,
    apply_reranking,
    array_from_bytes,
    best_score_per_faq,
    decide,
)
from .models import (
    LIVE_NAMESPACE,
    CalibratedThreshold,
    Faq,
    FaqClassifier,
    FaqTranslation,
    FaqWording,
    Inquiry,
    PairHead,
)

logger = logging.getLogger(__name__)

LIVE_CORPUS = "faq_wording"
# Wordings fetched per question before aggregating per FAQ: enough to see several FAQs
# even when the best one has many near-identical wordings.
NEIGHBOURS_PER_QUESTION = 40
DEFAULT_TOP_K = 3


def corpus_for(namespace: str) -> str:
    """The vector corpus of a namespace: live FAQs and each evaluation never share neighbours."""
    return LIVE_CORPUS if namespace == LIVE_NAMESPACE else f"faq_{namespace}"[:40]


# Thresholds change when someone calibrates, rarely; each web process re-reads them this often.
THRESHOLD_CACHE_SECONDS = 10.0
recent_thresholds = RecentReads(THRESHOLD_CACHE_SECONDS)


def threshold_for(*, space: EmbeddingSpace, task: str) -> float:
    """The calibrated threshold of this space (for all questions), else the default registered for the space's
    model family (faq.embedding_registration): the searched space's model, not the configured client's, whose
    scale differs during a model switch."""
    calibrated = calibrated_thresholds(space=space, task=task).get("")
    return calibrated[0] if calibrated is not None else default_thresholds_for(space.model_name)[task]


def calibrated_thresholds(*, space: EmbeddingSpace, task: str) -> dict[str, tuple[float, float | None]]:
    """{language pair ("" for all questions, "en>zh" for English questions finding Chinese wordings):
    (value, margin)} calibrated for this space; empty when nobody calibrated it."""
    return recent_thresholds.get((space.id, task), lambda: {
        pair: (float(value), margin) for pair, value, margin
        in CalibratedThreshold.objects.filter(space=space, task=task).values_list("language_pair", "value", "margin")
    })


def cosine_threshold_for_pair(thresholds: dict[str, tuple[float, float | None]], *, question_language: str,
                              wording_language: str | None) -> tuple[float | None, float]:
    """The cosine rule's (threshold, margin) for a question of one language whose best wording is in another:
    that pair's where it was calibrated, else the space's; threshold None (never answer by cosine) when
    neither was."""
    value, margin = thresholds.get(f"{question_language}>{wording_language}", thresholds.get("", (None, None)))
    return value, margin if margin is not None else DEFAULT_COSINE_MARGIN


# What every match reads besides the question: the library's language means and which classifier fit is current.
# They change when the library is re-centred, query means learn from traffic or the classifier is refitted; each
# web process re-reads them this often (common.recent_reads; faq.apps says which saves forget them at once).
MATCH_CONTEXT_SECONDS = 5.0
match_context = RecentReads(MATCH_CONTEXT_SECONDS)
forget_match_context = match_context.forget


def centred_questions(*, space: EmbeddingSpace, namespace: str, questions: list[str],
                      vectors: np.ndarray) -> np.ndarray:
    """Question vectors as they are compared with the library's: each minus its language's query mean.

    Only once the library itself is centred (it has document means); a language without a query mean
    yet uses its document mean, and one with neither stays as it is (embeddings.centring).
    """
    corpus = corpus_for(namespace)
    means = match_context.get(("language means", space.id, corpus), lambda: centring.language_means_of_sides(
        space=space, scope=corpus, sides=[LanguageMean.Side.DOCUMENT, LanguageMean.Side.QUERY]))
    document = centring.usable(means[LanguageMean.Side.DOCUMENT])
    if not document:
        return vectors
    query = centring.usable(means[LanguageMean.Side.QUERY])
    return centring.centre(vectors, [detect_language(question) for question in questions], {**document, **query})


_classifier_cache: dict[tuple[int, str], tuple[tuple, LinearClassifier]] = {}
_classifier_lock = threading.Lock()


def current_classifier(*, space: EmbeddingSpace, namespace: str) -> LinearClassifier | None:
    """The fitted classifier of (space, namespace), decoded once per fit and kept in memory.

    Which fit is current is asked in plain SQL (the ORM's query building cost more CPU than the statement
    itself, 0.9 ms against 0.2), at most once per MATCH_CONTEXT_SECONDS per process.
    """
    version = match_context.get(("classifier", space.id, namespace),
                          lambda: current_classifier_version(space=space, namespace=namespace))
    if version is None:
        return None
    key = (space.id, namespace)
    with _classifier_lock:
        cached = _classifier_cache.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
    row = FaqClassifier.objects.get(id=version[0])
    classifier = LinearClassifier(
        faq_ids=list(row.faq_ids), weights=array_from_bytes(row.weights), bias=array_from_bytes(row.bias),
        confidence_threshold=row.confidence_threshold, cosine_floor=(row.cross_validation or {}).get("cosine_floor"),
    )
    with _classifier_lock:
        _classifier_cache[key] = (version, classifier)
    return classifier


def current_classifier_version(*, space: EmbeddingSpace, namespace: str) -> tuple | None:
    with connection.cursor() as cursor:
        cursor.execute(
            # One row at most (index of faq_classifier_space_namespace_unique).
            f"SELECT id, fitted_at FROM {FaqClassifier._meta.db_table} WHERE space_id = %s AND namespace = %s",
            [space.id, namespace],
        )
        return cursor.fetchone()


def match_questions(
    *, questions: list[str], namespace: str = LIVE_NAMESPACE, top_k: int = DEFAULT_TOP_K,
) -> list[Match]:
    """Best FAQs for each question, one embedding call and one neighbour query for the batch.

    Raises embeddings.errors.EmbeddingError when the endpoint is down.
    """
    space = active_space()
    vectors = embed_queries(questions, task="faq", space=space)
    return match_in_stages(questions=questions, vectors=vectors, namespace=namespace, top_k=top_k, space=space)


def match_in_stages(*, questions: list[str], vectors: np.ndarray, namespace: str, top_k: int,
                    space: EmbeddingSpace) -> list[Match]:
    """The first stage (match_vectors on the centred question vectors), then the reranker over its best
    RERANKER_CANDIDATES where one is set. vectors: the questions' raw query vectors."""
    vectors = centred_questions(space=space, namespace=namespace, questions=questions, vectors=vectors)
    languages = [detect_language(question) for question in questions]
    reranker = get_reranker()
    if reranker is None:
        return match_vectors(vectors=vectors, namespace=namespace, top_k=top_k, space=space, languages=languages)
    matches = match_vectors(vectors=vectors, namespace=namespace, space=space, languages=languages,
                            top_k=max(top_k, settings.RERANKER_CANDIDATES))
    return rerank_matches(questions=questions, matches=matches, top_k=top_k, reranker=reranker)


def rerank_matches(*, questions: list[str], matches: list[Match], top_k: int,
                   reranker: RerankerClient) -> list[Match]:
    """The optional second stage: each question's candidates re-scored against their FAQ questions.

    A reranker that fails leaves every match as the first stage ranked it (cut to top_k): it is a
    refinement, and a customer is never kept waiting on it.
    """
    questions_of = dict(Faq.objects.filter(id__in={c.faq_id for m in matches for c in m.candidates})
                        .values_list("id", "question"))
    try:
        return [
            apply_reranking(match, reranker.scores(query=question, task="faq", documents=[
                questions_of.get(candidate.faq_id, "") for candidate in match.candidates
            ]), top_k=top_k)
            for question, match in zip(questions, matches, strict=True)
        ]
    except RerankerError as error:
        logger.warning("reranker skipped, first-stage ranking kept: %s", error)
        return [replace(match, candidates=match.candidates[:top_k]) for match in matches]


def match_vectors(
    *, vectors: np.ndarray, namespace: str = LIVE_NAMESPACE, top_k: int = DEFAULT_TOP_K,
    space: EmbeddingSpace | None = None, languages: list[str] | None = None,
) -> list[Match]:
    """vectors: the questions as compared (centred_questions); languages: theirs, for the cosine rule's
    threshold per language pair (None: the space's threshold for all questions)."""
    space = space or active_space()
    corpus = corpus_for(namespace)
    neighbours = nearest_neighbours(space=space, corpus=corpus, vectors=vectors, k=NEIGHBOURS_PER_QUESTION)
    faq_of_wording, active_faq_ids, language_of_wording = live_wordings_and_faqs(
        namespace=namespace, wording_ids={neighbour.object_id for row in neighbours for neighbour in row},
    )
    classifier = current_classifier(space=space, namespace=namespace)
    allowed = active_faq_ids if classifier is not None else None
    probabilities = classifier.probabilities(vectors) if classifier is not None else None
    calibrated = calibrated_thresholds(space=space, task="faq")
    # The classifier's own floor is learned with it; this one is for classifiers fitted before it was.
    fallback_floor = threshold_for(space=space, task="faq") - CLASSIFIER_COSINE_ALLOWANCE
    matches = []
    for position, row in enumerate(neighbours):
        known = [n for n in row if n.object_id in faq_of_wording]
        nearest_language = language_of_wording[known[0].object_id] if known else None
        cosine, margin = cosine_threshold_for_pair(
            calibrated, question_language=languages[position] if languages else "", wording_language=nearest_language)
        thresholds = Thresholds(cosine=cosine, cosine_margin=margin, classifier_cosine_floor=fallback_floor)
        matches.append(decide(
            scores=best_score_per_faq(row, faq_of_wording),
            probabilities=probabilities[position] if probabilities is not None else None,
            classifier=classifier, thresholds=thresholds, top_k=top_k, allowed_faq_ids=allowed,
            neighbours=[(faq_of_wording[n.object_id], n.score) for n in known],
        ))
        matches[-1] = replace(matches[-1], nearest_language=nearest_language)
    return matches


def live_wordings_and_faqs(*, namespace: str,
                           wording_ids: set[int]) -> tuple[dict[int, int], set[int], dict[int, str]]:
    """({wording id: FAQ id} for those of these wordings whose FAQ is active, {every active FAQ id},
    {wording id: its language}).

    One statement on the match path (index faq_namespace_active_idx), where each query's round trip and
    ORM compilation is a measurable share of a request.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT faq.id, wording.id, wording.language
            FROM faq_faq faq
            LEFT JOIN faq_faqwording wording ON wording.faq_id = faq.id AND wording.id = ANY(%s)
            WHERE faq.namespace = %s AND faq.active
            """,
            [list(wording_ids), namespace],
        )
        rows = cursor.fetchall()
    return ({wording_id: faq_id for faq_id, wording_id, _ in rows if wording_id is not None},
            {faq_id for faq_id, _, _ in rows},
            {wording_id: language for _, wording_id, language in rows if wording_id is not None})


@dataclass(frozen=True)
class PairVerdict:
    score: float  # the pair head's probability, or the cosine
    same_meaning: bool
    threshold: float
    method: str = "cosine"  # "pair head" where one was fitted for the space


def pair_head(*, space: EmbeddingSpace) -> PairHeadModel | None:
    """The pair head fitted for this space (fit_pair_head), or None."""
    row = PairHead.objects.filter(space=space).first()
    if row is None:
        return None
    return PairHeadModel(weights=array_from_bytes(row.weights), bias=row.bias, threshold=row.threshold)


def pair_similarity(*, pairs: list[tuple[str, str]], threshold: float | None = None) -> list[PairVerdict]:
    """Whether each pair of texts means the same, both written as 'pair' queries (symmetric).

    With a pair head fitted for the active space: its probability against its threshold. Otherwise the
    cosine against the space's calibrated pair threshold (or `threshold`).
    """
    if not pairs:
        return []
    space = active_space()
    vectors = embed_queries([text for pair in pairs for text in pair], task="pair")
    head = pair_head(space=space) if threshold is None else None
    if head is not None:
        probabilities = head.probabilities(vectors[0::2], vectors[1::2])
        return [PairVerdict(score=float(p), same_meaning=bool(p >= head.threshold), threshold=head.threshold,
                            method="pair head") for p in probabilities]
    if threshold is None:
        threshold = threshold_for(space=space, task="pair")
    return verdicts_from_vectors(vectors=vectors, threshold=threshold)


def verdicts_from_vectors(*, vectors: np.ndarray, threshold: float) -> list[PairVerdict]:
    """Vectors hold both sides interleaved (first, second, first, second, ...)."""
    scores = np.einsum("ij,ij->i", vectors[0::2], vectors[1::2])
    return [PairVerdict(score=float(score), same_meaning=bool(score >= threshold), threshold=threshold)
            for score in scores]


@dataclass(frozen=True)
class ShownAnswer:
    question: str
    answer: str
    language: str  # the answer's language: the customer's where the FAQ has it, else the FAQ's own


def answers_in(*, faq_ids: list[int], language: str) -> dict[int, ShownAnswer]:
    """Each FAQ's question and its answer as Faq.answer_in(language) chooses it, in one statement."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT faq.id, faq.question, coalesce(translation.answer, faq.answer),
                   coalesce(translation.language, faq.language)
            FROM faq_faq faq
            LEFT JOIN faq_faqtranslation translation
              ON translation.faq_id = faq.id AND translation.language = %s AND faq.language <> %s
            WHERE faq.id = ANY(%s)
            """,
            [language, language, list(faq_ids)],
        )
        return {faq_id: ShownAnswer(question=question, answer=answer, language=answer_language)
                for faq_id, question, answer, answer_language in cursor.fetchall()}


def question_in(faq: Faq, language: str) -> str:
    """The FAQ's question as asked in `language`: its first wording in that language, else its own question."""
    if language == faq.language:
        return faq.question
    text = faq.wordings.filter(language=language).order_by("id").values_list("text", flat=True).first()
    return text or faq.question


def faqs_by_id(faq_ids: list[int]) -> dict[int, Faq]:
    return {faq.id: faq for faq in Faq.objects.filter(id__in=faq_ids).prefetch_related("translations")}


NEEDS_STAFF = Q(status=Inquiry.Status.ESCALATED) | Q(helpful=False)


def normalised_question() -> Func:
    """The question as repeats are recognised: lower case, without spaces and punctuation (Chinese included)."""
    return Func(Lower("question"), Value(r"[[:space:][:punct:]？。！，、；：“”‘’（）《》【】]+"), Value(""),
                Value("g"), function="regexp_replace", output_field=CharField())


def inbox_inquiries() -> QuerySet[Inquiry]:
    """Escalated or unhelpful inquiries (index inquiry_needs_staff_idx), one row per repeated question:
    the newest asking, with `asked` = how many times it was asked; most common topic first, then newest.

    Window functions over the normalised question: each question is normalised once, not once per pair.
    """
    by_question = {"partition_by": [F("normalised")]}
    return (
        Inquiry.objects.filter(NEEDS_STAFF).annotate(normalised=normalised_question())
        .annotate(asked=Window(Count("id"), **by_question),
                  newest_first=Window(RowNumber(), order_by=[F("created_at").desc(), F("id").desc()], **by_question))
        .filter(newest_first=1)
        .select_related("matched_faq", "topic_cluster")
        .order_by(F("topic_cluster__size").desc(nulls_last=True), "-created_at")
    )


@dataclass(frozen=True)
class MissingTranslation:
    faq_id: int
    question: str
    language: str  # the language customers asked in, which the FAQ has no answer in
    asked: int


def missing_translations(*, limit: int = 20) -> list[MissingTranslation]:
    """Live FAQs that answered customers in another language than theirs, most asked first:
    the translations worth writing."""
    lacking = (
        Inquiry.objects.filter(matched_faq__isnull=False, matched_faq__namespace=LIVE_NAMESPACE)
        .exclude(language=F("matched_faq__language"))
        .exclude(Exists(FaqTranslation.objects.filter(faq=OuterRef("matched_faq"), language=OuterRef("language"))))
        .values("matched_faq", "matched_faq__question", "language")
        .annotate(asked=Count("id")).order_by("-asked", "matched_faq")[:limit]
    )
    return [MissingTranslation(faq_id=row["matched_faq"], question=row["matched_faq__question"],
                               language=row["language"], asked=row["asked"]) for row in lacking]


def faq_library_fingerprint_rows(*, namespace: str) -> QuerySet:
    return (
        FaqWording.objects.filter(faq__namespace=namespace, faq__active=True)
        .order_by("id").values_list("id", "faq_id")
    )


def wordings_per_faq(*, namespace: str) -> dict[int, int]:
    return dict(
        Faq.objects.filter(namespace=namespace, active=True).annotate(n=Count("wordings")).values_list("id", "n")
    )
