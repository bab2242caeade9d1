"""python manage.py load_hs_nomenclature PATH [PATH ...] [--language zh]"""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from verifier.nomenclature import DEFAULT_NOTE_PASSAGES, NomenclatureFormatError, load_nomenclature


class Command(BaseCommand):
    help = (
        "Load HS nomenclature CSV files (hscode,description[,section,parent,level] or code,name[,description]; "
        "a directory loads all its .csv files) into the knowledge base and index the evidence. Safe to run again."
    )

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", help="CSV file or directory of CSV files")
        parser.add_argument("--language", help="language code of the descriptions (default: guessed per file)")
        parser.add_argument(
            "--note-passages", type=int, default=DEFAULT_NOTE_PASSAGES,
            help="evidence passages taken from each heading's explanatory note (code,name,description files)",
        )
        parser.add_argument("--json", action="store_true", help="print the report as one JSON object")

    def handle(self, *args, paths: list[str], language: str | None, note_passages: int, json: bool = False, **options):
        for path in paths:
            try:
                report = load_nomenclature(path, language=language, note_passages=note_passages)
            except NomenclatureFormatError as error:
                raise CommandError(str(error)) from error
            if json:
                self.stdout.write(_json_line(report.to_json()))
                continue
            self.stdout.write(
                f"{path}: {report.rows_read} rows from {', '.join(report.files)}; codes {report.codes_created} new, "
                f"{report.codes_updated} changed, {report.codes_unchanged} unchanged; evidence "
                f"{report.entries_created} new, {report.entries_updated} changed, {report.entries_removed} removed; "
                f"{report.entries_indexed} embedded"
            )
            for name, reason in report.skipped_files:
                self.stdout.write(f"  skipped {name}: {reason}")
            for row in report.bad_rows:
                self.stderr.write(f"  {row.file} row {row.row_number}: {row.reason}")


def _json_line(payload: dict) -> str:
    return json.dumps(payload, ensure_ascii=False)
