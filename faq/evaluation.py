"""Offline measurements: FAQ matching on a labelled library and queries, pair similarity on labelled pairs.

The library is loaded into its own namespace and vector corpus, matched through the
same selectors the live service uses, and deleted afterwards: live FAQs are never
touched. Vectors come through the embedding cache, so a second run costs no model time.
"""
from __future__ import annotations

import csv
import hashlib
import uuid
from pathlib import Path

import numpy as np
from django.conf import settings

from embeddings.reranker import get_reranker
from embeddings.services import embed_queries
from embeddings.store import active_space

from . import selectors, services
from .matching import threshold_for_precision
from .models import CalibratedThreshold, Faq

MATCH_BATCH_SIZE = 250
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
        for start in range(0, len(questions), MATCH_BATCH_SIZE):
            # The live path's stages, reranker included when configured, so it is measured before it is switched on.
            matches += selectors.match_in_stages(
                questions=questions[start:start + MATCH_BATCH_SIZE], vectors=vectors[start:start + MATCH_BATCH_SIZE],
                namespace=namespace, top_k=3, space=space,
            )
        result = faq_metrics(matches=matches, expected=expected, external_of=external_of,
                             confidence_threshold=classifier.confidence_threshold if classifier else None,
                             cosine_threshold=selectors.threshold_for(space=space, task="faq"))
        calibrated = cosine_threshold_for_precision(matches=matches, expected=expected, external_of=external_of)
        result["calibrated_cosine_threshold"] = calibrated
        result["reranker"] = settings.RERANKER_MODEL if reranker else None
        if reranker is not None:  # the share the reranker really scored (a failing call keeps the first stage)
            result["reranked"] = round(sum(match.method.endswith("+rerank") for match in matches) / len(matches), 4)
        if save_threshold and calibrated is not None:
            CalibratedThreshold.objects.update_or_create(
                space=space, task=CalibratedThreshold.Task.FAQ,
                defaults={"value": calibrated, "source": f"{library_path} / {queries_path}",
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


def cosine_threshold_for_precision(*, matches, expected: list[str], external_of: dict[int, str]) -> float | None:
    """The lowest nearest-wording cosine at which the nearest FAQ is right often enough (the cosine rule's
    threshold, used where a library is too small for the classifier); escalation-labelled queries count as wrong."""
    scored = [(match.nearest_score, bool(label) and external_of.get(match.nearest_faq_id) == label)
              for match, label in zip(matches, expected) if match.nearest_score is not None]
    if not scored:
        return None
    confidence = np.array([score for score, _ in scored])
    correct = np.array([right for _, right in scored])
    threshold = threshold_for_precision(confidence, correct, target_precision=services.TARGET_ANSWER_PRECISION)
    return round(float(threshold), 4)


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


def best_accuracy_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The cut between consecutive sorted scores that classifies the most pairs correctly."""
    order = np.argsort(scores)
    sorted_scores, sorted_labels = scores[order], labels[order]
    # Threshold just above position i: pairs 0..i negative, the rest positive.
    negatives_below = np.concatenate([[0], np.cumsum(sorted_labels == 0)])
    positives_above = np.concatenate([[int(sorted_labels.sum())], int(sorted_labels.sum()) - np.cumsum(sorted_labels)])
    correct = negatives_below + positives_above
    best = int(np.argmax(correct))
    if best == 0:
        return float(sorted_scores[0])
    if best == len(sorted_scores):
        return float(sorted_scores[-1] + 1e-6)
    return float((sorted_scores[best - 1] + sorted_scores[best]) / 2)


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


def evaluate_pairs(*, path: str | Path, calibrate_path: str | Path | None, save: bool,
                   log=lambda message: None) -> dict:
    rows = read_csv(path, required=("sentence1", "sentence2", "label"))
    check_pair_rows(rows, path=path)
    space = active_space()
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
    evaluated_pairs = pair_vectors(rows)
    scores, labels = np.einsum("ij,ij->i", evaluated_pairs[0], evaluated_pairs[1]), evaluated_pairs[2]
    result = pair_metrics(scores, labels, threshold=threshold)
    if calibration is not None:
        result["calibration"] = calibration
    return result

