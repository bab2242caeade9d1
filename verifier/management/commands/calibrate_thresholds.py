from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from embeddings.store import active_space
from verifier.routing import calibrate, load_thresholds
from verifier.selectors import labelled_calibration_samples, reviewed_calibration_samples
from verifier.services import save_calibration


class Command(BaseCommand):
    help = (
        "Compute routing thresholds for the active embedding space so that auto-pass keeps a target precision, "
        "from reviewed items (default) or from labelled CSV files (--labelled), and store them."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--target-precision", type=float, default=0.98)
        parser.add_argument("--labelled", type=Path, action="append", default=[],
                            help="labelled CSV (id,description,hs_code[,language]); repeatable; nothing is stored")
        parser.add_argument("--chapter", default="", help="calibrate this HS chapter's thresholds only")
        parser.add_argument("--min-samples", type=int, default=30)
        parser.add_argument("--dry-run", action="store_true", help="print the thresholds without storing them")

    def handle(self, *args, target_precision: float, labelled: list[Path], chapter: str, min_samples: int,
               dry_run: bool, **options) -> None:
        if not 0 < target_precision <= 1:
            raise CommandError("--target-precision must be in (0, 1]")
        space = active_space()
        current = load_thresholds(space).for_chapter(chapter)
        if labelled:
            samples = [sample for path in labelled for sample in labelled_calibration_samples(path=path)]
            source = "labelled " + ", ".join(path.name for path in labelled)
        else:
            samples = reviewed_calibration_samples(space_id=space.pk, chapter=chapter or None)
            source = "reviewed items"
        try:
            calibration = calibrate(samples, target_precision=target_precision,
                                    novelty_max_similarity=current.novelty_max_similarity, min_samples=min_samples)
        except ValueError as error:
            raise CommandError(f"cannot calibrate from {source}: {error}") from None
        self.stdout.write(f"{space}, chapter {chapter or 'all'}, from {source}: {calibration.describe()}")
        if not dry_run:
            save_calibration(space=space, chapter=chapter, calibration=calibration,
                             note=f"target precision {target_precision} from {source}")
            self.stdout.write("stored")
