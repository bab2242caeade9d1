import json

from django.core.management.base import BaseCommand, CommandError

from faq.evaluation import DatasetError, evaluate_faq


class Command(BaseCommand):
    help = ("Match every query of a labelled CSV (question,faq_id; empty faq_id = should be escalated) against a "
            "library CSV loaded into an isolated namespace (live FAQs untouched, removed afterwards). Prints n, "
            "top-1, top-3, answered share and precision among answered; --json ends with one JSON line. "
            "--save-threshold stores the cosine threshold calibrated on these queries for the active space.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--library", required=True)
        parser.add_argument("--queries", required=True)
        parser.add_argument("--json", action="store_true", dest="as_json")
        parser.add_argument("--save-threshold", action="store_true",
                            help="store the calibrated cosine threshold for the active embedding space")

    def handle(self, *args, library: str, queries: str, as_json: bool, save_threshold: bool, **options) -> None:
        try:
            result = evaluate_faq(library_path=library, queries_path=queries, save_threshold=save_threshold,
                                  log=self.stderr.write)
        except DatasetError as error:
            raise CommandError(str(error)) from error
        if not as_json:
            for key, value in result.items():
                self.stdout.write(f"{key:>24}: {value}")
        self.stdout.write(json.dumps(result))
