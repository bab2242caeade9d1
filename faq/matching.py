"""How a question is matched to FAQs, as arithmetic on vectors (no database, no HTTP).

Two stages, both cheap:
1. Nearest wordings by cosine (pgvector), aggregated per FAQ by their best wording:
   the `score` shown to staff, and the whole decision for small libraries.
2. Where the library is big enough to learn from, a logistic-regression classifier
   over all wording vectors gives each FAQ a probability, and the nearest wordings
   vote (weighted by how close each is); the normalised geometric mean of the two is
   the ranking and the `confidence` that decides whether the answer is shown
   (BANKING77 held-out 20%, CPU model: nearest neighbour 87.9% top-1, both 92.3%).
   Its threshold is calibrated by cross-validation on the library, so "answered" is precise.

The top-2 margin rule: an answer is shown only when the best FAQ is clearly ahead
of the second; for cosine that is an explicit margin, for the classifier the
probability already falls when two FAQs compete.
"""
from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from common.voting import pooled_votes
from embeddings.selectors import Neighbour

# Below this many FAQs or wordings per FAQ a classifier learns noise: cosine decides alone.
MIN_FAQS_FOR_CLASSIFIER = 3
MIN_WORDINGS_PER_FAQ_FOR_CLASSIFIER = 4
# Cosine rule: the best FAQ must lead the second by this much (e5 paraphrases sit 0.90-0.94, so gaps are small).
DEFAULT_COSINE_MARGIN = 0.01
# Logistic regression over standardised vector components (each dimension scaled to unit variance over
# the library), and its inverse regularisation; chosen by 5-fold cross-validation on the BANKING77 library
# split (top-1 92.4%, against 92.3% for C=50 on raw vectors), never on its held-out queries.
CLASSIFIER_C = 0.25
# Nearest wordings that vote, and the softness of their weights exp((cosine - best) / T):
# with e5's compressed cosines a wording 0.01 further away counts e times less.
VOTING_NEIGHBOURS = 10
VOTE_TEMPERATURE = 0.01
# How far below the cosine answer threshold the classifier may still answer: it rejects out-of-scope
# questions (whose softmax can still be peaked) only when their best wording is plainly unrelated.
CLASSIFIER_COSINE_ALLOWANCE = 0.06
# The classifier's own floor: this quantile of the best-wording cosines of held-out wordings it answered
# rightly in cross-validation (a question less like the library than 99% of those is out of scope).
COSINE_FLOOR_QUANTILE = 0.01


@dataclass(frozen=True)
class Candidate:
    faq_id: int
    score: float | None  # cosine of the FAQ's best wording among the nearest neighbours
    confidence: float  # classifier probability, or the cosine where there is no classifier
    rerank_score: float | None = None  # the reranker's, where that optional stage ran


@dataclass(frozen=True)
class Match:
    candidates: list[Candidate]  # best first
    answered: bool
    method: str  # "classifier" or "cosine"
    nearest_faq_id: int | None = None  # the FAQ of the single nearest wording: the plain nearest-neighbour answer
    nearest_score: float | None = None  # that wording's cosine
    nearest_language: str | None = None  # that wording's language (thresholds per language pair)

    @property
    def best(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None


@dataclass(frozen=True)
class Thresholds:
    # Answer threshold on the best wording's cosine, calibrated for the space (and language pair);
    # None where nobody calibrated one: the cosine rule then never answers, it only suggests.
    cosine: float | None
    cosine_margin: float = DEFAULT_COSINE_MARGIN
    # Below this best-wording cosine the classifier does not answer either, for classifiers without their own
    # floor; None: CLASSIFIER_COSINE_ALLOWANCE below the cosine threshold.
    classifier_cosine_floor: float | None = None

    def floor_for(self, classifier: LinearClassifier) -> float:
        if classifier.cosine_floor is not None:
            return classifier.cosine_floor
        if self.classifier_cosine_floor is not None:
            return self.classifier_cosine_floor
        return self.cosine - CLASSIFIER_COSINE_ALLOWANCE if self.cosine is not None else -1.0


@dataclass
class LinearClassifier:
    faq_ids: list[int]
    weights: np.ndarray  # classes x dimensions
    bias: np.ndarray  # classes
    confidence_threshold: float
    # Below this best-wording cosine it does not answer: out-of-scope questions can still get a peaked
    # softmax. Learned with it (fit_classifier); None for classifiers fitted before that.
    cosine_floor: float | None = None
    _position: dict[int, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._position = {faq_id: position for position, faq_id in enumerate(self.faq_ids)}

    def votes(self, neighbours: Sequence[tuple[int, float]]) -> np.ndarray:
        """Share of the nearest wordings' weighted vote per class (zeros when none is known)."""
        result = np.zeros(len(self.faq_ids))
        nearest = [(self._position[faq_id], score) for faq_id, score in neighbours
                   if faq_id in self._position][:VOTING_NEIGHBOURS]
        if nearest:
            for position, vote in pooled_votes(nearest, temperature=VOTE_TEMPERATURE, best=nearest[0][1]).items():
                result[position] = vote
            result /= result.sum()
        return result

    def probabilities(self, vectors: np.ndarray) -> np.ndarray:
        logits = vectors @ self.weights.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        exponentials = np.exp(logits)
        return exponentials / exponentials.sum(axis=1, keepdims=True)


def array_to_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array.astype(np.float32), allow_pickle=False)
    return buffer.getvalue()


def array_from_bytes(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(bytes(data)), allow_pickle=False)


def best_score_per_faq(neighbours: Sequence[Neighbour], faq_of_wording: dict[int, int]) -> dict[int, float]:
    """FAQ id -> cosine of its best wording, in best-first order."""
    best: dict[int, float] = {}
    for neighbour in neighbours:
        faq_id = faq_of_wording.get(neighbour.object_id)
        if faq_id is not None and neighbour.score > best.get(faq_id, -2.0):
            best[faq_id] = neighbour.score
    return dict(sorted(best.items(), key=lambda item: -item[1]))


def decide(
    *, scores: dict[int, float], probabilities: np.ndarray | None, classifier: LinearClassifier | None,
    thresholds: Thresholds, top_k: int, allowed_faq_ids: set[int] | None = None,
    neighbours: list[tuple[int, float]] | None = None,
) -> Match:
    """Rank FAQs for one question and decide whether the best one answers it.

    scores: FAQ id -> best wording cosine (best first). probabilities: this question's row
    of classifier.probabilities, or None. neighbours: (FAQ id, cosine) of the nearest
    wordings, best first, for the vote. allowed_faq_ids: FAQs that may be returned
    (active ones); the classifier may know FAQs since deactivated.
    """
    nearest = next((faq_id for faq_id in scores if allowed_faq_ids is None or faq_id in allowed_faq_ids), None)
    nearest_score = scores.get(nearest) if nearest is not None else None
    if classifier is not None and probabilities is not None:
        probabilities = combine(probabilities, classifier.votes(neighbours or []))
        order = np.argsort(-probabilities)
        candidates = []
        for position in order:
            faq_id = classifier.faq_ids[position]
            if allowed_faq_ids is not None and faq_id not in allowed_faq_ids:
                continue
            candidates.append(Candidate(faq_id=faq_id, score=scores.get(faq_id),
                                        confidence=float(probabilities[position])))
            if len(candidates) == top_k:
                break
        # FAQs added since the fit are unknown to the classifier; they still compete by cosine.
        known = set(classifier.faq_ids)
        newcomers = [faq_id for faq_id in scores if faq_id not in known
                     and (allowed_faq_ids is None or faq_id in allowed_faq_ids)]
        if newcomers and candidates and scores[newcomers[0]] > (candidates[0].score or -1.0):
            candidates.insert(0, Candidate(faq_id=newcomers[0], score=scores[newcomers[0]],
                                           confidence=scores[newcomers[0]]))
            candidates = candidates[:top_k]
            return Match(candidates=candidates, answered=_cosine_answers(candidates, scores, thresholds),
                         method="cosine", nearest_faq_id=nearest, nearest_score=nearest_score)
        best = candidates[0] if candidates else None
        answered = (
            best is not None
            and best.confidence >= classifier.confidence_threshold
            and (best.score or -1.0) >= thresholds.floor_for(classifier)
        )
        return Match(candidates=candidates, answered=answered, method="classifier", nearest_faq_id=nearest,
                     nearest_score=nearest_score)
    candidates = [
        Candidate(faq_id=faq_id, score=score, confidence=score)
        for faq_id, score in scores.items()
        if allowed_faq_ids is None or faq_id in allowed_faq_ids
    ][:top_k]
    return Match(candidates=candidates, answered=_cosine_answers(candidates, scores, thresholds), method="cosine",
                 nearest_faq_id=nearest, nearest_score=nearest_score)


def apply_reranking(match: Match, rerank_scores: Sequence[float], *, top_k: int) -> Match:
    """The candidates in the reranker's order (scores given in the candidates' order), cut to top_k.

    The answer stands only where the reranker agrees with the first stage on the best FAQ: the
    first stage's threshold was calibrated for its own ranking, and a disagreement is exactly the
    doubt that suggestions are for. So reranking can reorder suggestions and withhold an answer,
    never answer what the first stage would not.
    """
    if len(rerank_scores) != len(match.candidates):
        raise ValueError(f"{len(rerank_scores)} rerank scores for {len(match.candidates)} candidates")
    order = sorted(range(len(match.candidates)), key=lambda position: -rerank_scores[position])
    candidates = [replace(match.candidates[position], rerank_score=float(rerank_scores[position]))
                  for position in order][:top_k]
    agrees = bool(candidates) and match.best is not None and candidates[0].faq_id == match.best.faq_id
    return replace(match, candidates=candidates, answered=match.answered and agrees, method=f"{match.method}+rerank")


def combine(probabilities: np.ndarray, votes: np.ndarray) -> np.ndarray:
    """Normalised geometric mean of classifier probabilities and neighbour votes (votes alone if no neighbour)."""
    if not votes.any():
        return probabilities
    product = np.sqrt(probabilities * votes)
    total = product.sum(axis=-1, keepdims=True)
    return np.where(total > 0, product / np.maximum(total, 1e-12), probabilities)


def neighbour_votes(similarities: np.ndarray, labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Vote shares per class for each row of a (queries x wordings) cosine matrix, as `votes` computes them."""
    class_position = np.searchsorted(classes, labels)
    nearest = np.argsort(-similarities, axis=1)[:, :VOTING_NEIGHBOURS]
    nearest_scores = np.take_along_axis(similarities, nearest, axis=1)
    weights = np.exp((nearest_scores - nearest_scores[:, :1]) / VOTE_TEMPERATURE)
    result = np.zeros((len(similarities), len(classes)))
    rows = np.repeat(np.arange(len(similarities)), nearest.shape[1])
    np.add.at(result, (rows, class_position[nearest].ravel()), weights.ravel())
    return result / result.sum(axis=1, keepdims=True)


def _cosine_answers(candidates: list[Candidate], scores: dict[int, float], thresholds: Thresholds) -> bool:
    if not candidates or candidates[0].score is None or thresholds.cosine is None:
        return False
    best = candidates[0].score
    runner_up = max((score for faq_id, score in scores.items() if faq_id != candidates[0].faq_id), default=-1.0)
    return best >= thresholds.cosine and best - runner_up >= thresholds.cosine_margin


def fit_classifier(
    *, vectors: np.ndarray, labels: Sequence[int], target_precision: float, folds: int = 3, seed: int = 0,
    query_vectors: np.ndarray | None = None,
) -> tuple[LinearClassifier, dict]:
    """Fit logistic regression over wording vectors and calibrate its confidence threshold.

    vectors: the wordings as stored (documents, what the neighbours are searched in); query_vectors:
    the same wordings written as queries, as customers' questions are. The classifier learns from
    both sides, and calibration scores held-out wordings the way a question is scored (BANKING77:
    top-1 91.3% with documents only, 91.8% with both, before standardising).

    1. Cross-validated confidences (each wording scored by a model and neighbours that never saw it).
    2. The threshold: the lowest probability at which precision among answered stays at
       or above target_precision on those held-out wordings.
    3. The final model, fitted on every wording.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels_array = np.asarray(labels)
    classes, counts = np.unique(labels_array, return_counts=True)
    usable_folds = int(min(folds, counts.min()))
    report: dict = {"wordings": int(len(labels_array)), "faqs": int(len(classes))}

    def new_model() -> Pipeline:
        return make_pipeline(StandardScaler(), LogisticRegression(C=CLASSIFIER_C, max_iter=500))

    threshold = 0.5
    cosine_floor = None
    if usable_folds >= 2:
        held_out_top = np.zeros(len(labels_array), dtype=np.int64)
        held_out_confidence = np.zeros(len(labels_array))
        held_out_best_cosine = np.zeros(len(labels_array))
        splitter = StratifiedKFold(n_splits=usable_folds, shuffle=True, random_state=seed)
        for train, test in splitter.split(vectors, labels_array):
            model = new_model().fit(*training_set(vectors, query_vectors, labels_array, train))
            asked = (query_vectors if query_vectors is not None else vectors)[test]
            similarities = asked @ vectors[train].T
            held_out_best_cosine[test] = similarities.max(axis=1)
            votes = neighbour_votes(similarities, labels_array[train], model.classes_)
            probabilities = combine(model.predict_proba(asked), votes)
            held_out_top[test] = model.classes_[probabilities.argmax(axis=1)]
            held_out_confidence[test] = probabilities.max(axis=1)
        correct = held_out_top == labels_array
        threshold = threshold_for_precision(held_out_confidence, correct, target_precision=target_precision)
        answered = held_out_confidence >= threshold
        # The floor: the cosine below which hardly any rightly answered held-out wording lies (its scale is
        # the vectors', centred or not, so it is learned rather than set).
        if (correct & answered).any():
            cosine_floor = float(np.quantile(held_out_best_cosine[correct & answered], COSINE_FLOOR_QUANTILE))
        report.update({
            "folds": usable_folds,
            "top1": float(correct.mean()),
            "answered": float(answered.mean()),
            "answered_precision": float(correct[answered].mean()) if answered.any() else None,
        })
    model = new_model().fit(*training_set(vectors, query_vectors, labels_array, np.arange(len(labels_array))))
    scaler, regression = model[0], model[-1]
    # Standardising is folded into the weights, so serving stays one matrix product on raw vectors:
    # ((x - mean) / scale) @ W.T + b  ==  x @ (W / scale).T + (b - (mean / scale) @ W.T)
    weights = regression.coef_ / scaler.scale_
    classifier = LinearClassifier(
        faq_ids=[int(value) for value in model.classes_],
        weights=weights.astype(np.float32),
        bias=(regression.intercept_ - weights @ scaler.mean_).astype(np.float32),
        confidence_threshold=float(threshold),
        cosine_floor=cosine_floor,
    )
    report["confidence_threshold"] = float(threshold)
    report["cosine_floor"] = cosine_floor
    return classifier, report


def training_set(vectors: np.ndarray, query_vectors: np.ndarray | None, labels: np.ndarray,
                 rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if query_vectors is None:
        return vectors[rows], labels[rows]
    return np.vstack([vectors[rows], query_vectors[rows]]), np.concatenate([labels[rows], labels[rows]])


def threshold_for_precision(confidence: np.ndarray, correct: np.ndarray, *, target_precision: float) -> float:
    """The lowest confidence t such that precision among {confidence >= t} is >= target (1.0 if none)."""
    order = np.argsort(-confidence)
    cumulative_precision = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)
    meets = np.nonzero(cumulative_precision >= target_precision)[0]
    if len(meets) == 0:
        return 1.0
    # The largest prefix that still meets the target; its last confidence is the threshold.
    return float(confidence[order][meets.max()])


# --- pair judgement -------------------------------------------------------------------------
# Inverse regularisation strengths tried for the pair head, chosen by cross-validated accuracy on the
# training pairs (never the evaluated ones).
PAIR_HEAD_C_GRID = (0.01, 0.03, 0.1, 0.3)


def pair_features(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """|u - v|, u * v and the cosine of each pair of unit vectors: symmetric, so the order of a pair is moot."""
    cosine = np.einsum("ij,ij->i", first, second)
    return np.hstack([np.abs(first - second), first * second, cosine[:, None]]).astype(np.float32)


@dataclass(frozen=True)
class PairHeadModel:
    weights: np.ndarray  # features
    bias: float
    threshold: float  # probability at or above which a pair means the same

    def probabilities(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        logits = pair_features(first, second) @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-logits))


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


def fit_pair_head(*, first: np.ndarray, second: np.ndarray, labels: np.ndarray, folds: int = 5,
                  seed: int = 0) -> tuple[PairHeadModel, dict]:
    """Logistic regression on pair features; C and the probability threshold chosen by cross-validation.

    1. For each C of the grid: held-out probabilities of every pair (folds stratified by label).
    2. The C with the best accuracy at its own best threshold; that threshold is kept (with its F1).
    3. The final model on every pair.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = pair_features(first, second)
    labels = np.asarray(labels).astype(int)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    best: tuple[float, float, float, float] | None = None  # accuracy, C, threshold, F1
    for c in PAIR_HEAD_C_GRID:
        held_out = np.zeros(len(labels))
        for train, test in splitter.split(features, labels):
            model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
            held_out[test] = model.fit(features[train], labels[train]).predict_proba(features[test])[:, 1]
        threshold = best_accuracy_threshold(held_out, labels)
        predicted = held_out >= threshold
        accuracy = float((predicted == (labels == 1)).mean())
        true_positive = float((predicted & (labels == 1)).sum())
        f1 = 2 * true_positive / (predicted.sum() + (labels == 1).sum()) if true_positive else 0.0
        if best is None or accuracy > best[0]:
            best = (accuracy, c, threshold, f1)
    accuracy, c, threshold, f1 = best
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000)).fit(features, labels)
    scaler, regression = model[0], model[-1]
    weights = regression.coef_[0] / scaler.scale_
    head = PairHeadModel(weights=weights.astype(np.float32),
                         bias=float(regression.intercept_[0] - weights @ scaler.mean_), threshold=float(threshold))
    report = {"pairs": int(len(labels)), "C": c, "folds": folds, "cross_validated_accuracy": round(accuracy, 4),
              "cross_validated_f1": round(float(f1), 4), "threshold": round(float(threshold), 4),
              "all_negative_accuracy": round(float((labels == 0).mean()), 4)}
    return head, report
