from django.core.management.base import BaseCommand, CommandError

from faq.evaluation import DatasetError, read_csv
from faq.services import import_faqs


class Command(BaseCommand):
    help = ("Import FAQs from CSV: faq_id,question[,answer,category,language]. Rows with the same faq_id are "
            "wordings of one FAQ, in any language; each row's answer is the FAQ's answer in that row's language "
            "(a translation where it differs from the first row's). Bad rows are reported by row number and "
            "skipped; the rest is imported and embedded by the worker.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("path")

    def handle(self, *args, path: str, **options) -> None:
        try:
            rows = read_csv(path, required=("faq_id", "question"))
        except DatasetError as error:
            raise CommandError(str(error)) from error
        report = import_faqs(rows=rows)
        for error in report.errors:
            self.stderr.write(f"{path}: {error}")
        self.stdout.write(f"{report.faqs_created} FAQs created, {report.faqs_updated} updated, "
                          f"{report.wordings_created} wordings added, "
                          f"{report.translations_written} translations written, "
                          f"{len(report.errors)} rows skipped")
