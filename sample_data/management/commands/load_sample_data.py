"""Load sample data for a first look: HS nomenclature, FAQs and a few declarations to verify.

Uses ../shared/data (or --shared-data PATH) when present, otherwise the small sample that the
repository carries in sample_data/data/. Safe to run again: every loader is idempotent, and parts
already loaded are skipped.
"""
from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management import BaseCommand, call_command

from faq.models import Faq
from verifier.models import DeclarationItem, HsCode

REPOSITORY_SAMPLE = Path(__file__).resolve().parents[2] / "data"
DEFAULT_SHARED_DATA = Path(settings.BASE_DIR).parent / "shared" / "data"


class Command(BaseCommand):
    help = "Load sample HS nomenclature, FAQs and declarations (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--shared-data", type=Path, default=DEFAULT_SHARED_DATA,
                            help="folder with hs2022/ and hs_cn2025/ (default: ../shared/data)")
        parser.add_argument("--repository-sample-only", action="store_true",
                            help="use only the small sample in sample_data/data/")

    def handle(self, *args, shared_data: Path, repository_sample_only: bool, **options):
        use_shared = not repository_sample_only and (shared_data / "hs2022").is_dir()
        if HsCode.objects.exists():
            self.stdout.write("nomenclature already loaded")
        elif use_shared:
            self.stdout.write(f"loading the HS nomenclature from {shared_data}")
            call_command("load_hs_nomenclature", str(shared_data / "hs2022" / "harmonized-system.csv"))
            call_command("load_hs_nomenclature", str(shared_data / "hs_cn2025"))
        else:
            call_command("load_hs_nomenclature", str(REPOSITORY_SAMPLE / "nomenclature_en.csv"))
            call_command("load_hs_nomenclature", str(REPOSITORY_SAMPLE / "nomenclature_zh.csv"), "--language", "zh")
        if Faq.objects.exists():
            self.stdout.write("FAQ library already loaded")
        else:
            call_command("import_faqs", str(REPOSITORY_SAMPLE / "faqs.csv"))
            calibrate_sample_faq_threshold(self)
        if DeclarationItem.objects.exists():
            self.stdout.write("sample declarations already imported")
        else:
            call_command("import_declarations", str(REPOSITORY_SAMPLE / "declarations.csv"))


def calibrate_sample_faq_threshold(command: BaseCommand) -> None:
    """The sample library is too small for the classifier, and its cosine rule answers only under a threshold
    calibrated for the model: calibrate it on the sample's labelled questions (faq_questions.csv)."""
    from embeddings.errors import EmbeddingError
    from faq.models import CalibratedThreshold

    if CalibratedThreshold.objects.filter(task=CalibratedThreshold.Task.FAQ).exists():
        return
    try:
        call_command("evaluate_faq", "--library", str(REPOSITORY_SAMPLE / "faqs.csv"),
                     "--queries", str(REPOSITORY_SAMPLE / "faq_questions.csv"), "--save-threshold", "--json")
    except EmbeddingError as error:
        command.stdout.write(f"FAQ threshold not calibrated (embedding endpoint unavailable: {error}); the sample "
                             "library suggests until `load_sample_data` runs again")
