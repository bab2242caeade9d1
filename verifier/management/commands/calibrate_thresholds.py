from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from embeddings.store import active_space
from verifier.calibration import calibrate_check, calibrate_suggest
from verifier.evaluation import labelled_calibration_samples
from verifier.routing import load_thresholds
from verifier.selectors import reviewed_calibration_samples
from verifier.services import save_calibration


class Command(BaseCommand):
    help = (
        "Compute routing thresholds for the active embedding space and store them: suggest mode's auto-pass, and "
        "check mode's auto-pass and warning, each to a target precision whose 95% lower confidence bound must hold "
        "(a margin for unseen data), with the cross-validated figures to expect. From reviewed items (default) or "
        "labelled CSV files (--labelled; rows with a declared_code, as make_check_set writes, calibrate check mode)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--target-precision", type=float, default=0.98,
                            help="auto-pass precision to keep, suggest and check mode (default 0.98)")
        parser.add_argument("--target-check-precision", type=float, default=0.99,
                            help="check mode's auto-pass precision: the declared code is right (default 0.99)")
        parser.add_argument("--target-warning-precision", type=float, default=0.8,
                            help="share of check-mode warnings whose declared code is wrong (default 0.8)")
        parser.add_argument("--max-false-warning", type=float, default=0.035,
                            help="largest share of right declarations warned (default 0.035)")
        parser.add_argument("--labelled", type=Path, action="append", default=[],
                            help="labelled CSV (id,description,hs_code[,language][,declared_code]); repeatable")
        parser.add_argument("--chapter", default="", help="calibrate this HS chapter's thresholds only")
        parser.add_argument("--min-samples", type=int, default=30)
        parser.add_argument("--dry-run", action="store_true", help="print the thresholds without storing them")

    def handle(self, *args, target_precision: float, target_check_precision: float,
               target_warning_precision: float, max_false_warning: float, labelled: list[Path], chapter: str,
               min_samples: int, dry_run: bool, **options) -> None:
        for name, value in (("--target-precision", target_precision),
                            ("--target-check-precision", target_check_precision),
                            ("--target-warning-precision", target_warning_precision)):
            if not 0 < value <= 1:
                raise CommandError(f"{name} must be in (0, 1]")
        space = active_space()
        thresholds = load_thresholds(space).for_chapter(chapter)
        if labelled:
            suggest, check = [], []
            for path in labelled:
                file_suggest, file_check = labelled_calibration_samples(path=path)
                suggest += file_suggest
                check += file_check
            source = "labelled " + ", ".join(path.name for path in labelled)
        else:
            suggest, check = reviewed_calibration_samples(space_id=space.pk, chapter=chapter or None)
            source = "reviewed items"
        notes = []
        try:
            thresholds, gate = calibrate_suggest(suggest, base=thresholds, target_precision=target_precision,
                                                 min_samples=min_samples)
        except ValueError as error:
            raise CommandError(f"cannot calibrate from {source}: {error}") from None
        notes.append(gate.describe())
        if len(check) >= min_samples:
            thresholds, gates = calibrate_check(
                check, base=thresholds, target_auto_pass_precision=target_check_precision,
                target_warning_precision=target_warning_precision, max_false_warning=max_false_warning,
                min_samples=min_samples,
            )
            notes += [gate.describe() for gate in gates]
        else:
            notes.append(f"check mode: {len(check)} samples with a known declared code, fewer than {min_samples}; "
                         "its thresholds are left as they were")
        for note in notes:
            self.stdout.write(f"{space}, chapter {chapter or 'all'}, from {source}: {note}")
        if not dry_run:
            save_calibration(space=space, chapter=chapter, thresholds=thresholds,
                             note=f"from {source}: " + " | ".join(notes))
            self.stdout.write("stored")
