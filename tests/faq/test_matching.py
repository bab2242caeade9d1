"""The decision arithmetic: cosine rule with the top-2 margin, the classifier, threshold calibration."""
import numpy as np

from embeddings.selectors import Neighbour
from faq.matching import (
    Candidate,
    LinearClassifier,
    Match,
    Thresholds,
    best_score_per_faq,
    combine,
    decide,
    fit_classifier,
    neighbour_votes,
    threshold_for_precision,
)


def test_it_keeps_the_best_wording_score_per_faq():
    neighbours = [Neighbour(10, 0.93), Neighbour(11, 0.91), Neighbour(20, 0.90), Neighbour(99, 0.95)]
    scores = best_score_per_faq(neighbours, {10: 1, 11: 1, 20: 2})  # wording 99 belongs to no live FAQ
    assert scores == {1: 0.93, 2: 0.90}


def test_it_answers_when_the_best_cosine_clears_the_threshold_and_leads_by_the_margin():
    match = decide(scores={1: 0.93, 2: 0.88}, probabilities=None, classifier=None,
                   thresholds=Thresholds(cosine=0.9, cosine_margin=0.01), top_k=3)
    assert match.answered and match.best.faq_id == 1 and match.method == "cosine"


def test_it_refuses_to_answer_when_the_top_two_faqs_are_too_close():
    match = decide(scores={1: 0.930, 2: 0.925}, probabilities=None, classifier=None,
                   thresholds=Thresholds(cosine=0.9, cosine_margin=0.01), top_k=3)
    assert not match.answered
    assert [candidate.faq_id for candidate in match.candidates] == [1, 2]


def test_it_refuses_below_the_threshold():
    match = decide(scores={1: 0.85}, probabilities=None, classifier=None, thresholds=Thresholds(cosine=0.9), top_k=3)
    assert not match.answered


def test_it_ranks_by_classifier_probability_and_answers_above_its_calibrated_confidence():
    classifier = LinearClassifier(faq_ids=[1, 2, 3], weights=np.eye(3, dtype=np.float32) * 10,
                                  bias=np.zeros(3, dtype=np.float32), confidence_threshold=0.9)
    probabilities = classifier.probabilities(np.array([[0.0, 1.0, 0.0], [0.5, 0.5, 0.0]], dtype=np.float32))
    confident = decide(scores={1: 0.92, 2: 0.90}, probabilities=probabilities[0], classifier=classifier,
                       thresholds=Thresholds(cosine=0.9), top_k=2)
    torn = decide(scores={1: 0.92, 2: 0.92}, probabilities=probabilities[1], classifier=classifier,
                  thresholds=Thresholds(cosine=0.9), top_k=2)
    assert confident.best.faq_id == 2 and confident.answered and confident.method == "classifier"
    assert confident.nearest_faq_id == 1  # plain nearest neighbour would have picked the other FAQ
    assert not torn.answered


def test_it_does_not_let_the_classifier_answer_an_unrelated_question():
    classifier = LinearClassifier(faq_ids=[1, 2], weights=np.eye(2, dtype=np.float32) * 10,
                                  bias=np.zeros(2, dtype=np.float32), confidence_threshold=0.5)
    probabilities = classifier.probabilities(np.array([[1.0, 0.0]], dtype=np.float32))[0]
    match = decide(scores={1: 0.70}, probabilities=probabilities, classifier=classifier,
                   thresholds=Thresholds(cosine=0.9), top_k=2)
    assert match.best.faq_id == 1 and not match.answered


def test_it_calibrates_the_lowest_threshold_that_keeps_the_target_precision():
    confidence = np.array([0.99, 0.95, 0.9, 0.8, 0.7, 0.6])
    correct = np.array([True, True, True, False, True, False])
    assert threshold_for_precision(confidence, correct, target_precision=1.0) == 0.9
    assert threshold_for_precision(confidence, correct, target_precision=0.8) == 0.7
    assert threshold_for_precision(np.array([0.9]), np.array([False]), target_precision=0.9) == 1.0


def test_it_fits_a_classifier_that_separates_overlapping_groups_better_than_chance():
    generator = np.random.default_rng(7)
    centres = generator.normal(size=(4, 16))
    labels = np.repeat([11, 22, 33, 44], 30)
    vectors = centres[np.searchsorted([11, 22, 33, 44], labels)] + generator.normal(scale=0.8, size=(120, 16))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    classifier, report = fit_classifier(vectors=vectors.astype(np.float32), labels=labels, target_precision=0.95)
    predicted = np.array(classifier.faq_ids)[classifier.probabilities(vectors.astype(np.float32)).argmax(axis=1)]
    assert sorted(classifier.faq_ids) == [11, 22, 33, 44]
    assert (predicted == labels).mean() > 0.9
    assert report["folds"] >= 2 and report["top1"] > 0.6
    assert 0 < report["confidence_threshold"] <= 1


def test_it_lets_the_nearest_wordings_overrule_a_torn_classifier():
    classifier = LinearClassifier(faq_ids=[1, 2], weights=np.zeros((2, 2), dtype=np.float32),
                                  bias=np.zeros(2, dtype=np.float32), confidence_threshold=0.8)
    votes = classifier.votes([(2, 0.95), (2, 0.94), (1, 0.90)])
    combined = combine(np.array([0.5, 0.5]), votes)
    assert votes[1] > 0.9 and combined.argmax() == 1 and abs(combined.sum() - 1) < 1e-9


def test_it_votes_the_same_way_in_calibration_as_in_matching():
    similarities = np.array([[0.95, 0.94, 0.90, 0.80]])
    labels = np.array([2, 2, 1, 1])
    classifier = LinearClassifier(faq_ids=[1, 2], weights=np.zeros((2, 2), dtype=np.float32),
                                  bias=np.zeros(2, dtype=np.float32), confidence_threshold=0.8)
    expected = classifier.votes([(2, 0.95), (2, 0.94), (1, 0.90), (1, 0.80)])
    assert np.allclose(neighbour_votes(similarities, labels, np.array([1, 2]))[0], expected)


def test_it_serves_the_standardised_model_as_one_product_on_raw_vectors():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from faq.matching import CLASSIFIER_C

    generator = np.random.default_rng(3)
    labels = np.repeat([5, 6, 7], 20)
    # Components on very different scales: what standardising is for.
    vectors = generator.normal(size=(60, 8)) * np.array([5.0, 0.01, 1, 1, 1, 1, 1, 0.1])
    vectors[:, 1] += 0.02 * np.searchsorted([5, 6, 7], labels)
    classifier, _ = fit_classifier(vectors=vectors, labels=labels, target_precision=0.9)
    reference = make_pipeline(StandardScaler(), LogisticRegression(C=CLASSIFIER_C, max_iter=500)).fit(vectors, labels)
    queries = generator.normal(size=(10, 8)) * np.array([5.0, 0.01, 1, 1, 1, 1, 1, 0.1])
    assert np.allclose(classifier.probabilities(queries), reference.predict_proba(queries), atol=1e-4)


def _match(answered: bool) -> Match:
    return Match(candidates=[Candidate(faq_id=1, score=0.93, confidence=0.9),
                             Candidate(faq_id=2, score=0.91, confidence=0.05),
                             Candidate(faq_id=3, score=0.90, confidence=0.03)], answered=answered, method="classifier")


def test_it_reorders_candidates_by_the_reranker_and_withholds_an_answer_it_disputes():
    from faq.matching import apply_reranking

    reranked = apply_reranking(_match(answered=True), [0.2, 0.9, 0.1], top_k=2)
    assert [c.faq_id for c in reranked.candidates] == [2, 1]
    assert [c.rerank_score for c in reranked.candidates] == [0.9, 0.2]
    assert reranked.candidates[0].confidence == 0.05  # the first stage's figures stay beside the reranker's
    assert reranked.answered is False and reranked.method == "classifier+rerank"


def test_it_keeps_the_answer_when_the_reranker_agrees_and_never_answers_what_the_first_stage_would_not():
    from faq.matching import apply_reranking

    assert apply_reranking(_match(answered=True), [0.8, 0.3, 0.1], top_k=3).answered is True
    assert apply_reranking(_match(answered=False), [0.8, 0.3, 0.1], top_k=3).answered is False


def test_the_classifiers_own_cosine_floor_decides_on_its_own_scale():
    # Centred vectors have lower cosines: a floor learned in cross-validation, not the raw-cosine threshold.
    classifier = LinearClassifier(faq_ids=[1, 2], weights=np.eye(2, dtype=np.float32) * 10,
                                  bias=np.zeros(2, dtype=np.float32), confidence_threshold=0.5, cosine_floor=0.45)
    probabilities = classifier.probabilities(np.array([[1.0, 0.0]], dtype=np.float32))[0]
    sure = decide(scores={1: 0.60}, probabilities=probabilities, classifier=classifier,
                  thresholds=Thresholds(cosine=0.9), top_k=2)
    loose = decide(scores={1: 0.40}, probabilities=probabilities, classifier=classifier,
                   thresholds=Thresholds(cosine=0.9), top_k=2)
    assert sure.answered and not loose.answered


def test_the_cosine_rule_never_answers_without_a_calibrated_threshold():
    match = decide(scores={1: 0.99, 2: 0.50}, probabilities=None, classifier=None,
                   thresholds=Thresholds(cosine=None), top_k=2)
    assert match.best.faq_id == 1 and not match.answered


def test_the_cosine_rule_is_calibrated_on_the_lead_over_the_next_faq_where_the_cosine_says_little():
    from faq.evaluation import calibrate_cosine_rule, cosine_rule_answers
    from faq.matching import Candidate, Match

    def match(best: float, runner_up: float) -> Match:
        return Match(candidates=[Candidate(faq_id=1, score=best, confidence=best),
                                 Candidate(faq_id=2, score=runner_up, confidence=runner_up)],
                     answered=False, method="cosine", nearest_faq_id=1, nearest_score=best)

    # Right and wrong nearest FAQs have the same cosines; only the right ones lead clearly.
    right = [match(0.80 + 0.001 * n, 0.70) for n in range(50)]
    wrong = [match(0.80 + 0.001 * n, 0.795) for n in range(50)]
    floor, margin = calibrate_cosine_rule(matches=right + wrong, expected=["a"] * 50 + ["b"] * 50,
                                          external_of={1: "a", 2: "b"})
    assert floor <= 0.81 and 0.01 <= margin <= 0.11
    assert all(cosine_rule_answers(m, (floor, margin)) for m in right[5:])
    assert not any(cosine_rule_answers(m, (floor, margin)) for m in wrong)
