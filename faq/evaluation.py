"""Offline measurements: FAQ matching on a labelled library and queries, pair similarity on labelled pairs.

The library is loaded into its own namespace and vector corpus, matched through the
same selectors the live service uses, and deleted afterwards: live FAQs are never
touched. Vectors come through the embedding cache, so a second run costs no model time.
"""
from __future__ import annotations

import csv
import hashlib
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
from django.conf import settings

from embeddings import centring
from embeddings.models import LanguageMean
from embeddings.reranker import get_reranker
from embeddings.services import embed_queries
from embeddings.store import active_space

from . import selectors, services
from .languages import detect_language
from .matching import (
    DEFAULT_COSINE_MARGIN,
    PairHeadModel,
    array_to_bytes,
    best_accuracy_threshold,
    fit_pair_head,
    threshold_for_precision,
)
from .models import CalibratedThreshold, Faq, PairHead

# Questions matched per step. After each step their vectors are folded into the query-side language means,
# as live traffic is (faq.services.learn_question_means): a question is centred only with means learned
# from the library and the questions before it, never from itself or later ones.
MATCH_BATCH_SIZE = 50
# A language pair gets a threshold of its own only when this many questions of the pair calibrated it.
MIN_QUERIES_PER_LANGUAGE_PAIR = 100
CROSS_VALIDATION_FOLDS = 5
# The cosine rule's floor: this quantile of the rightly matched calibration questions' best cosines.
IN_SCOPE_QUANTILE = 0.05
# Texts per embedding call: the shared CPU endpoint serves one request at a time, and a big request
# waiting behind others' outlasts the client's timeout.
EMBED_CHUNK_SIZE = 64


def embed_queries_in_chunks(texts: list[str], *, task: str) -> np.ndarray:
    parts = [embed_queries(texts[start:start + EMBED_CHUNK_SIZE], task=task)
             for start in range(0, len(texts), EMBED_CHUNK_SIZE)]
    return np.vstack(parts) if parts else np.zeros((0, 0), dtype=np.float32)


class DatasetError(ValueError):
    """A CSV that cannot be used, with the file and row that say why."""


def read_csv(path: str | Path, *, required: tuple[str, ...]) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = [column for column in required if column not in (reader.fieldnames or [])]
            if missing:
                raise DatasetError(f"{path}: missing column(s) {', '.join(missing)}; found {reader.fieldnames}")
            return list(reader)
    except OSError as error:
        raise DatasetError(f"{path}: {error.strerror}") from error
    except UnicodeDecodeError as error:
        raise DatasetError(f"{path}: not UTF-8 ({error})") from error


def hash_bucket(row: dict[str, str], *, buckets: int, key_columns: list[str]) -> int:
    """A stable bucket for a row from its content: the same split on every machine and run."""
    key = "\x1f".join(row[column] or "" for column in key_columns)
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest(), 16) % buckets


def split_rows(
    rows: list[dict[str, str]], *, buckets: int, test_buckets: set[int], train_buckets: set[int] | None,
    key_columns: list[str],
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(train, test): rows whose hash bucket is in test_buckets, and in train_buckets (or all others)."""
    train, test = [], []
    for row in rows:
        bucket = hash_bucket(row, buckets=buckets, key_columns=key_columns)
        if bucket in test_buckets:
            test.append(row)
        elif train_buckets is None or bucket in train_buckets:
            train.append(row)
    return train, test


def evaluate_faq(*, library_path: str | Path, queries_path: str | Path, save_threshold: bool = False,
                 log=lambda message: None) -> dict:
    """n, top-1, top-3, answered share and precision among answered, beside the plain nearest-neighbour top-1.

    Queries with an empty faq_id should be escalated: answering them counts against precision.
    """
    library = read_csv(library_path, required=("faq_id", "question"))
    queries = read_csv(queries_path, required=("faq_id", "question"))
    namespace = f"eval-{uuid.uuid4().hex[:12]}"
    try:
        report = services.import_faqs(rows=library, namespace=namespace)
        if report.errors:
            log(f"library: {len(report.errors)} bad rows skipped; first: {report.errors[0]}")
        log(f"library: {report.faqs_created} FAQs, {report.wordings_created} wordings; embedding (cached)...")
        services.index_wordings(namespace=namespace)
        classifier = services.refit_classifier(namespace=namespace)
        if classifier is not None:
            log(f"classifier: {classifier.cross_validation}")
        external_of = dict(Faq.objects.filter(namespace=namespace).values_list("id", "external_id"))
        questions = [row["question"].strip() for row in queries]
        expected = [row["faq_id"].strip() for row in queries]
        log(f"queries: {len(questions)}; embedding (cached)...")
        vectors = embed_queries_in_chunks(questions, task="faq")
        space = active_space()
        reranker = get_reranker()
        matches = []
        languages = [detect_language(question) for question in questions]
        for start in range(0, len(questions), MATCH_BATCH_SIZE):
            batch = slice(start, start + MATCH_BATCH_SIZE)
            # The live path's stages, reranker included when configured, so it is measured before it is switched on.
            matches += selectors.match_in_stages(questions=questions[batch], vectors=vectors[batch],
                                                 namespace=namespace, top_k=3, space=space)
            centring.learn_means(space=space, scope=selectors.corpus_for(namespace), side=LanguageMean.Side.QUERY,
                                 vectors=vectors[batch], languages=languages[batch])
            # What the worker's minute sweep does live: centring starts once a second language is usable.
            if services.recentre_library(namespace=namespace, space=space) and classifier is not None:
                classifier = services.refit_classifier(namespace=namespace)
        cosine_threshold = selectors.calibrated_thresholds(space=space, task="faq").get("", (None,))[0]
        result = faq_metrics(matches=matches, expected=expected, external_of=external_of,
                             confidence_threshold=classifier.confidence_threshold if classifier else None,
                             cosine_threshold=cosine_threshold)
        result["language_pairs"] = dict(sorted(Counter(
            f"{language}>{match.nearest_language}" for language, match in zip(languages, matches)).items()))
        calibrated = calibrate_cosine_rule(matches=matches, expected=expected, external_of=external_of)
        per_pair = cosine_rules_per_language_pair(matches=matches, expected=expected, external_of=external_of,
                                                  languages=languages)
        result["calibrated_cosine_rule"] = {
            pair: {"cosine": rule[0], "margin": rule[1]} for pair, rule in {"": calibrated, **per_pair}.items()
            if rule is not None}
        result["cross_validated_cosine_rule"] = cross_validated_cosine_rule(
            matches=matches, expected=expected, external_of=external_of, languages=languages)
        result["reranker"] = settings.RERANKER_MODEL if reranker else None
        if reranker is not None:  # the share the reranker really scored (a failing call keeps the first stage)
            result["reranked"] = round(sum(match.method.endswith("+rerank") for match in matches) / len(matches), 4)
        if save_threshold and calibrated is not None:
            for pair, (value, margin) in {"": calibrated, **per_pair}.items():
                CalibratedThreshold.objects.update_or_create(
                    space=space, task=CalibratedThreshold.Task.FAQ, language_pair=pair,
                    defaults={"value": value, "margin": margin, "source": f"{library_path} / {queries_path}",
                              "metrics": {"target_precision": services.TARGET_ANSWER_PRECISION}},
                )
        return result
    finally:
        services.delete_namespace(namespace=namespace)


def faq_metrics(*, matches, expected: list[str], external_of: dict[int, str],
                confidence_threshold: float | None, cosine_threshold: float) -> dict:
    labelled = [position for position, label in enumerate(expected) if label]
    top1 = sum(1 for p in labelled if matches[p].best and external_of[matches[p].best.faq_id] == expected[p])
    top3 = sum(1 for p in labelled if expected[p] in {external_of[c.faq_id] for c in matches[p].candidates})
    nearest = sum(1 for p in labelled if matches[p].nearest_faq_id and
                  external_of[matches[p].nearest_faq_id] == expected[p])
    answered = [p for p, match in enumerate(matches) if match.answered]
    correct_answered = sum(1 for p in answered if external_of[matches[p].best.faq_id] == expected[p])
    unlabelled = [p for p, label in enumerate(expected) if not label]
    return {
        "n": len(matches),
        "top1": round(top1 / len(labelled), 4) if labelled else None,
        "top3": round(top3 / len(labelled), 4) if labelled else None,
        "answered": round(len(answered) / len(matches), 4) if matches else None,
        "answered_precision": round(correct_answered / len(answered), 4) if answered else None,
        "nearest_neighbour_top1": round(nearest / len(labelled), 4) if labelled else None,
        "escalated_when_expected": (round(sum(1 for p in unlabelled if not matches[p].answered) / len(unlabelled), 4)
                                    if unlabelled else None),
        "method": matches[0].method if matches else None,
        "confidence_threshold": confidence_threshold,
        "cosine_threshold": cosine_threshold,
    }


def leading_margin(match) -> float | None:
    """How far the nearest FAQ's best wording leads the next FAQ's (the top-2 margin), or None."""
    if match.nearest_score is None:
        return None
    others = [candidate.score for candidate in match.candidates
              if candidate.faq_id != match.nearest_faq_id and candidate.score is not None]
    return match.nearest_score - max(others) if others else 1.0


def calibrate_cosine_rule(*, matches, expected: list[str], external_of: dict[int, str]) -> tuple[float, float] | None:
    """(cosine floor, margin) of the cosine rule (used where a library is too small for the classifier).

    With e5 the best cosine says little about whether the nearest FAQ is right (InsuranceQA en>zh: 98% precision
    only above 0.91, under 1% of questions); how far it leads the next FAQ says much more. So: a floor below
    which a question is not like the library at all (IN_SCOPE_QUANTILE of the rightly matched questions'
    cosines), and the lowest margin at which the nearest FAQ is right often enough among questions above it.
    Escalation-labelled questions (empty faq_id) count as wrong.
    """
    rows = [(match.nearest_score, leading_margin(match), bool(label) and external_of.get(match.nearest_faq_id) == label)
            for match, label in zip(matches, expected) if match.nearest_score is not None]
    right_scores = [score for score, _, right in rows if right]
    if not right_scores:
        return None
    floor = float(np.quantile(right_scores, IN_SCOPE_QUANTILE))
    eligible = [(margin, right) for score, margin, right in rows if score >= floor]
    margin = threshold_for_precision(np.array([m for m, _ in eligible]), np.array([r for _, r in eligible]),
                                     target_precision=services.TARGET_ANSWER_PRECISION)
    return round(floor, 4), round(max(float(margin), DEFAULT_COSINE_MARGIN), 4)


def cosine_rules_per_language_pair(*, matches, expected: list[str], external_of: dict[int, str],
                                   languages: list[str]) -> dict[str, tuple[float, float]]:
    """{"en>zh": (floor, margin)} for each (question language, nearest wording language) pair with enough questions."""
    pairs = [f"{language}>{match.nearest_language}" for language, match in zip(languages, matches)]
    rules = {}
    for pair, count in Counter(pairs).items():
        if count < MIN_QUERIES_PER_LANGUAGE_PAIR or pair.endswith(">None"):
            continue
        rows = [position for position, value in enumerate(pairs) if value == pair]
        rule = calibrate_cosine_rule(matches=[matches[p] for p in rows], expected=[expected[p] for p in rows],
                                     external_of=external_of)
        if rule is not None:
            rules[pair] = rule
    return rules


def cosine_rule_answers(match, rule: tuple[float, float] | None) -> bool:
    margin = leading_margin(match)
    return rule is not None and margin is not None and match.nearest_score >= rule[0] and margin >= rule[1]


def cross_validated_cosine_rule(*, matches, expected: list[str], external_of: dict[int, str],
                                languages: list[str], folds: int = CROSS_VALIDATION_FOLDS) -> dict:
    """What the cosine rule calibrated on labelled questions answers on questions it never saw.

    Each fold's questions are answered (nearest FAQ, under its floor and margin) with the rules (overall
    and per language pair) calibrated on the other folds: the honest estimate of answered share and
    precision for a library calibrated on its own questions.
    """
    positions = np.arange(len(matches))
    fold_of = positions % folds
    answered = correct = 0
    for fold in range(folds):
        train = positions[fold_of != fold]
        subset = dict(matches=[matches[p] for p in train], expected=[expected[p] for p in train],
                      external_of=external_of)
        overall = calibrate_cosine_rule(**subset)
        per_pair = cosine_rules_per_language_pair(**subset, languages=[languages[p] for p in train])
        for position in positions[fold_of == fold]:
            match = matches[position]
            if not cosine_rule_answers(match, per_pair.get(f"{languages[position]}>{match.nearest_language}", overall)):
                continue
            answered += 1
            correct += bool(expected[position]) and external_of.get(match.nearest_faq_id) == expected[position]
    return {
        "folds": folds,
        "answered": round(answered / len(matches), 4) if matches else None,
        "answered_precision": round(correct / answered, 4) if answered else None,
    }


def pair_vectors(rows: list[dict[str, str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first vectors, second vectors, labels); both sides embedded as symmetric 'pair' queries via the cache."""
    texts = [text for row in rows for text in (row["sentence1"].strip(), row["sentence2"].strip())]
    vectors = embed_queries_in_chunks(texts, task="pair")
    return vectors[0::2], vectors[1::2], np.array([int(row["label"]) for row in rows])


def check_pair_rows(rows: list[dict[str, str]], *, path: str | Path) -> None:
    for row_number, row in enumerate(rows, start=2):
        if (row.get("label") or "").strip() not in ("0", "1"):
            raise DatasetError(f"{path}: row {row_number}: label must be 0 or 1, got {row.get('label')!r}")
        if not (row.get("sentence1") or "").strip() or not (row.get("sentence2") or "").strip():
            raise DatasetError(f"{path}: row {row_number}: sentence1 and sentence2 must not be empty")


def pair_metrics(scores: np.ndarray, labels: np.ndarray, *, threshold: float) -> dict:
    predicted = scores >= threshold
    positives = labels == 1
    true_positive = int((predicted & positives).sum())
    precision = true_positive / predicted.sum() if predicted.sum() else 0.0
    recall = true_positive / positives.sum() if positives.sum() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "n": int(len(labels)),
        "accuracy": round(float((predicted == positives).mean()), 4),
        "f1": round(float(f1), 4),
        "threshold": round(float(threshold), 4),
        "all_negative_accuracy": round(float((~positives).mean()), 4),
        "positive_share": round(float(positives.mean()), 4),
    }


def fit_and_store_pair_head(*, path: str | Path, save: bool = True,
                            log=lambda message: None) -> tuple[PairHeadModel, dict]:
    """Fit the pair head on a labelled pair file (sentence1,sentence2,label) and store it for the active space."""
    rows = read_csv(path, required=("sentence1", "sentence2", "label"))
    check_pair_rows(rows, path=path)
    log(f"fitting the pair head on {len(rows)} pairs (embedding, cached)...")
    first, second, labels = pair_vectors(rows)
    head, report = fit_pair_head(first=first, second=second, labels=labels)
    if save:
        PairHead.objects.update_or_create(space=active_space(), defaults={
            "weights": array_to_bytes(head.weights), "bias": head.bias, "threshold": head.threshold,
            "source": str(path), "metrics": report,
        })
    log(f"pair head: {report}")
    return head, report


def evaluate_pairs(*, path: str | Path, calibrate_path: str | Path | None, save: bool,
                   train_path: str | Path | None = None, log=lambda message: None) -> dict:
    """Accuracy and F1 of the pair judgement on labelled pairs.

    train_path: fit the pair head there first (stored for the space with save). calibrate_path: the cosine
    rule's threshold, calibrated there. Neither: the stored head where the space has one, else the cosine.
    """
    rows = read_csv(path, required=("sentence1", "sentence2", "label"))
    check_pair_rows(rows, path=path)
    space = active_space()
    training: dict | None = None
    head = selectors.pair_head(space=space) if not calibrate_path else None
    if train_path:
        head, training = fit_and_store_pair_head(path=train_path, save=save, log=log)
    calibration: dict | None = None
    if calibrate_path:
        calibration_rows = read_csv(calibrate_path, required=("sentence1", "sentence2", "label"))
        check_pair_rows(calibration_rows, path=calibrate_path)
        log(f"calibrating on {len(calibration_rows)} pairs (embedding, cached)...")
        calibration_pairs = pair_vectors(calibration_rows)
        calibration_scores = np.einsum("ij,ij->i", calibration_pairs[0], calibration_pairs[1])
        calibration_labels = calibration_pairs[2]
        threshold = best_accuracy_threshold(calibration_scores, calibration_labels)
        calibration = pair_metrics(calibration_scores, calibration_labels, threshold=threshold)
        if save:
            CalibratedThreshold.objects.update_or_create(
                space=space, task=CalibratedThreshold.Task.PAIR,
                defaults={"value": threshold, "source": str(calibrate_path), "metrics": calibration},
            )
    else:
        threshold = selectors.threshold_for(space=space, task="pair")
    log(f"evaluating {len(rows)} pairs (embedding, cached)...")
    first, second, labels = pair_vectors(rows)
    if head is not None:
        result = pair_metrics(head.probabilities(first, second), labels, threshold=head.threshold)
        result["method"] = "pair head"
    else:
        result = pair_metrics(np.einsum("ij,ij->i", first, second), labels, threshold=threshold)
        result["method"] = "cosine"
    if training is not None:
        result["training"] = training
    if calibration is not None:
        result["calibration"] = calibration
    return result
