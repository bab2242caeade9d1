import json

from django.core.management.base import BaseCommand, CommandError

from faq.evaluation import DatasetError, fit_and_store_pair_head


class Command(BaseCommand):
    help = ("Fit the pair judgement of /api/faq/pairs on a labelled pair file (sentence1,sentence2,label): logistic "
            "regression over the active space's frozen vectors (|u-v|, u*v, cosine), its strength and threshold "
            "chosen by cross-validation for accuracy; stored for the active embedding space. Prints the "
            "cross-validated accuracy and F1; --json ends with one JSON line.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("path")
        parser.add_argument("--json", action="store_true", dest="as_json")

    def handle(self, *args, path: str, as_json: bool, **options) -> None:
        try:
            _, report = fit_and_store_pair_head(path=path, log=self.stderr.write)
        except DatasetError as error:
            raise CommandError(str(error)) from error
        if not as_json:
            for key, value in report.items():
                self.stdout.write(f"{key:>26}: {value}")
        self.stdout.write(json.dumps(report))
