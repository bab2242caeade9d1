"""Choosing a threshold whose precision holds on new data: the lower bound, not the observed precision."""
from __future__ import annotations

import pytest

from common.calibration import choose_setting, cross_validate, wilson_lower_bound


def test_the_lower_bound_is_below_the_observed_share_and_closes_in_with_more_samples():
    assert wilson_lower_bound(30, 30) == pytest.approx(0.917, abs=0.001)  # 30 of 30 promises only ~92%
    assert wilson_lower_bound(150, 150) == pytest.approx(0.982, abs=0.001)
    assert wilson_lower_bound(0, 0) == 0.0


# Scores 0.00 .. 0.99; a sample is correct from 0.20 up: any threshold >= 0.20 is 100% precise on these samples.
SAMPLES = [(score / 100, score >= 20) for score in range(100)]


def passes(threshold: float, sample: tuple[float, bool]) -> bool:
    return sample[0] >= threshold


def test_it_picks_the_setting_that_selects_most_while_the_lower_bound_holds():
    choice = choose_setting([0.1, 0.2, 0.5, 0.9], SAMPLES, selects=passes, is_correct=lambda s: s[1],
                            target_precision=0.95)

    # 0.2 selects 80 samples, all correct (lower bound 0.966); 0.1 is 88.9% precise and fails the target.
    assert choice.setting == 0.2 and (choice.selected, choice.correct, choice.samples) == (80, 80, 100)
    assert choice.precision == 1.0 and choice.coverage == 0.8


def test_a_setting_precise_on_too_few_samples_is_refused():
    # 0.9 is 100% precise on its 10 samples, but their lower bound is 0.79: not a promise of 95%.
    assert choose_setting([0.9], SAMPLES, selects=passes, is_correct=lambda s: s[1], target_precision=0.95) is None


def test_a_setting_may_be_refused_for_another_reason():
    choice = choose_setting([0.2, 0.5], SAMPLES, selects=passes, is_correct=lambda s: s[1], target_precision=0.9,
                            acceptable=lambda choice: choice.selected <= 60)

    assert choice.setting == 0.5


def test_cross_validation_scores_each_fold_with_the_setting_chosen_without_it():
    def group_of(sample):
        return int(sample[0] * 100) // 2  # pairs of neighbouring samples form one group

    result = cross_validate([0.1, 0.2, 0.5], SAMPLES, selects=passes, is_correct=lambda s: s[1],
                            target_precision=0.95, folds=5, group_of=group_of)

    # Every fold's training samples lead to 0.2, so the held-out selection is the 80 correct samples.
    assert (result.selected, result.correct, result.samples, result.folds) == (80, 80, 100, 5)
    assert result.precision == 1.0
