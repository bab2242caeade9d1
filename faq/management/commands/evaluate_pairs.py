import json

from django.core.management.base import BaseCommand, CommandError

from faq.evaluation import DatasetError, evaluate_pairs


class Command(BaseCommand):
    help = ("Pair similarity over CSV sentence1,sentence2,label: accuracy, F1 and the threshold used. With --train "
            "PATH the pair head is fitted there first (see fit_pair_head) and evaluated; without, the space's stored "
            "head where it has one. With "
            "--calibrate PATH the threshold that maximises accuracy on that file is used (--save stores it for "
            "the active embedding space, for the pair API); else the stored or default threshold.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("path")
        parser.add_argument("--calibrate", default=None, help="calibrate the cosine rule's threshold on this file")
        parser.add_argument("--train", default=None,
                            help="fit the pair head on this labelled file first (stored for the space with --save)")
        parser.add_argument("--save", action="store_true")
        parser.add_argument("--json", action="store_true", dest="as_json")

    def handle(self, *args, path: str, calibrate: str | None, train: str | None, save: bool, as_json: bool,
               **options) -> None:
        try:
            result = evaluate_pairs(path=path, calibrate_path=calibrate, train_path=train, save=save,
                                    log=self.stderr.write)
        except DatasetError as error:
            raise CommandError(str(error)) from error
        if not as_json:
            for key, value in result.items():
                self.stdout.write(f"{key:>24}: {value}")
        self.stdout.write(json.dumps(result))
