"""Calibrating the routing thresholds of an embedding space so that what they promise holds on new declarations.

Two gates are calibrated, each with common.calibration (the lower confidence bound of precision must
reach the target; cross-validation reports what to expect on unseen data):
- suggest mode's auto-pass (confidence, margin, similarity floor) on samples whose right code is known;
- check mode's auto-pass (declared heading share, similarity floor) and warning (chapter and heading
  similarity gaps) on declarations known to be right or wrong.
Each setting is judged by `routing.route` itself, so the rule calibrated is the rule that runs.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

from common.calibration import Choice, CrossValidation, choose_setting, cross_validate

from .check_sets import declared_is_right
from .models import DeclarationBatch, Verdict
from .recommendation import LevelSupport
from .routing import Thresholds, codes_agree, route

MIN_CALIBRATION_SAMPLES = 30
CONFIDENCES = tuple(round(0.2 + 0.05 * step, 2) for step in range(17))  # 0.20 .. 1.00
MARGINS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4)
SIMILARITY_FLOORS = tuple(round(0.84 + 0.01 * step, 2) for step in range(12))  # 0.84 .. 0.95
DECLARED_SHARES = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)
CHAPTER_GAPS = tuple(round(0.015 + 0.005 * step, 3) for step in range(10))  # 0.015 .. 0.060
HEADING_GAPS = tuple(round(0.03 + 0.005 * step, 3) for step in range(11))  # 0.030 .. 0.080
CLOSED = 1.01  # a confidence or share threshold above any value: the gate selects nothing


@dataclass(frozen=True)
class SuggestSample:
    """One judged description whose right code is known (a label or a reviewer's code)."""

    confidence: float
    margin: float
    best_similarity: float | None
    recommendation_correct: bool
    group: str = ""


@dataclass(frozen=True)
class CheckSample:
    """One check-mode verdict whose declared code is known to be right or wrong."""

    declared_code: str
    declared_right: bool
    path: tuple[str, ...]
    declared_support: tuple[LevelSupport, ...]
    best_similarity: float | None
    group: str = ""

    @classmethod
    def from_verdict(cls, *, declared_code: str, evidence: dict, best_similarity: float | None, declared_right: bool,
                     group: str = "") -> CheckSample:
        support = tuple(
            LevelSupport(level=entry["level"], declared=entry["declared"], declared_share=entry["declared_share"],
                         best=entry["best"], best_share=entry["best_share"], similarity_gap=entry.get("similarity_gap"))
            for entry in evidence.get("declared_support", ())
        )
        return cls(declared_code=declared_code, declared_right=declared_right, path=tuple(evidence.get("path", ())),
                   declared_support=support, best_similarity=best_similarity, group=group)


@dataclass(frozen=True)
class GateCalibration:
    """One gate's chosen setting, its figures on the samples, and what cross-validation expects on new data."""

    name: str
    setting: dict
    choice: Choice | None
    expected: CrossValidation
    target_precision: float

    def describe(self) -> str:
        if self.choice is None:
            return f"{self.name}: no setting reaches precision {self.target_precision} with a margin; closed"
        cross = self.expected
        expected = "n/a" if cross.precision is None else f"{cross.precision:.3f}"
        return (f"{self.name}: {', '.join(f'{key} {value}' for key, value in self.setting.items())}; "
                f"{self.choice.selected}/{self.choice.samples} selected at precision {self.choice.precision:.3f} "
                f"(lower bound {self.choice.lower_bound():.3f}); cross-validated: {cross.coverage:.1%} selected at "
                f"precision {expected}")


def _judge(sample: CheckSample, thresholds: Thresholds) -> str:
    return route(
        mode=DeclarationBatch.Mode.CHECK, declared_code=sample.declared_code, declared_code_known=True,
        recommended_code="", confidence=0.0, margin=0.0, best_similarity=sample.best_similarity,
        thresholds=thresholds, path=sample.path, declared_support=sample.declared_support,
    ).tier


def calibrate_suggest(samples: list[SuggestSample], *, base: Thresholds, target_precision: float,
                      min_samples: int = MIN_CALIBRATION_SAMPLES) -> tuple[Thresholds, GateCalibration]:
    """Suggest mode's auto-pass: the (confidence, margin, similarity floor) that auto-passes the most while keeping
    the target precision's lower bound. Novel samples never auto-pass and are left out."""
    usable = [s for s in samples if s.best_similarity is not None and s.best_similarity >= base.novelty_max_similarity]
    if len(usable) < min_samples:
        raise ValueError(f"{len(usable)} usable samples; calibration needs at least {min_samples}")
    settings = list(itertools.product(CONFIDENCES, MARGINS, SIMILARITY_FLOORS))

    def selects(setting, sample: SuggestSample) -> bool:
        confidence, margin, floor = setting
        return sample.confidence >= confidence and sample.margin >= margin and sample.best_similarity >= floor

    arguments = dict(selects=selects, is_correct=lambda s: s.recommendation_correct, target_precision=target_precision)
    choice = choose_setting(settings, usable, **arguments)
    expected = cross_validate(settings, usable, group_of=lambda s: s.group or id(s), **arguments)
    if choice is None:
        thresholds = replace(base, auto_pass_min_confidence=CLOSED)
        setting = {"auto_pass_min_confidence": CLOSED}
    else:
        confidence, margin, floor = choice.setting
        thresholds = replace(base, auto_pass_min_confidence=confidence, review_margin=margin,
                             auto_pass_min_similarity=floor)
        setting = {"auto_pass_min_confidence": confidence, "review_margin": margin, "auto_pass_min_similarity": floor}
    return thresholds, GateCalibration("suggest auto-pass", setting, choice, expected, target_precision)


def calibrate_check(
    samples: list[CheckSample], *, base: Thresholds, target_auto_pass_precision: float,
    target_warning_precision: float, max_false_warning: float, min_samples: int = MIN_CALIBRATION_SAMPLES,
) -> tuple[Thresholds, list[GateCalibration]]:
    """Check mode: first the warning gaps, then the auto-pass share and floor under those warnings.

    Warning: the (chapter gap, heading gap) that warns the most wrong declarations while the warnings'
    precision keeps its lower bound at the target and at most `max_false_warning` of the right
    declarations are warned. Auto-pass: the (heading share, similarity floor) that auto-passes the most
    while the auto-passed declarations' precision keeps its lower bound at the target.
    """
    if len(samples) < min_samples:
        raise ValueError(f"{len(samples)} samples; calibration needs at least {min_samples}")
    right = sum(sample.declared_right for sample in samples) or 1

    def warns(setting, sample: CheckSample) -> bool:
        chapter_gap, heading_gap = setting
        return _judge(sample, replace(base, contradiction_chapter_gap=chapter_gap,
                                      contradiction_heading_gap=heading_gap)) == Verdict.Tier.WARNING

    def few_false_warnings(choice: Choice) -> bool:
        return (choice.selected - choice.correct) / right <= max_false_warning

    warning_settings = list(itertools.product(CHAPTER_GAPS, HEADING_GAPS))
    warning_arguments = dict(selects=warns, is_correct=lambda s: not s.declared_right,
                             target_precision=target_warning_precision, acceptable=few_false_warnings)
    warning = choose_setting(warning_settings, samples, **warning_arguments)
    warning_expected = cross_validate(warning_settings, samples, group_of=lambda s: s.group or id(s),
                                      **warning_arguments)
    if warning is None:
        # No warning is trustworthy enough: contradictions are only named to the reviewer.
        thresholds = replace(base, contradiction_chapter_gap=10.0, contradiction_heading_gap=10.0)
        warning_setting = {"contradiction_chapter_gap": 10.0, "contradiction_heading_gap": 10.0}
    else:
        thresholds = replace(base, contradiction_chapter_gap=warning.setting[0],
                             contradiction_heading_gap=warning.setting[1])
        warning_setting = {"contradiction_chapter_gap": warning.setting[0],
                           "contradiction_heading_gap": warning.setting[1]}

    def auto_passes(setting, sample: CheckSample) -> bool:
        share, floor = setting
        return _judge(sample, replace(thresholds, check_min_declared_share=share,
                                      check_min_similarity=floor)) == Verdict.Tier.AUTO_PASS

    auto_settings = list(itertools.product(DECLARED_SHARES, SIMILARITY_FLOORS))
    auto_arguments = dict(selects=auto_passes, is_correct=lambda s: s.declared_right,
                          target_precision=target_auto_pass_precision)
    auto = choose_setting(auto_settings, samples, **auto_arguments)
    auto_expected = cross_validate(auto_settings, samples, group_of=lambda s: s.group or id(s), **auto_arguments)
    if auto is None:
        thresholds = replace(thresholds, check_min_declared_share=CLOSED)
        auto_setting = {"check_min_declared_share": CLOSED}
    else:
        thresholds = replace(thresholds, check_min_declared_share=auto.setting[0], check_min_similarity=auto.setting[1])
        auto_setting = {"check_min_declared_share": auto.setting[0], "check_min_similarity": auto.setting[1]}
    return thresholds, [
        GateCalibration("check warning", warning_setting, warning, warning_expected, target_warning_precision),
        GateCalibration("check auto-pass", auto_setting, auto, auto_expected, target_auto_pass_precision),
    ]


def suggest_sample(*, recommended_code: str, right_code: str, confidence: float, margin: float,
                   best_similarity: float | None, group: str = "") -> SuggestSample:
    return SuggestSample(confidence=confidence, margin=margin, best_similarity=best_similarity,
                         recommendation_correct=bool(recommended_code) and codes_agree(right_code, recommended_code),
                         group=group)


def check_sample(*, declared_code: str, right_code: str, evidence: dict, best_similarity: float | None,
                 group: str = "") -> CheckSample:
    return CheckSample.from_verdict(declared_code=declared_code, evidence=evidence, best_similarity=best_similarity,
                                    declared_right=declared_is_right(declared_code, right_code), group=group)

