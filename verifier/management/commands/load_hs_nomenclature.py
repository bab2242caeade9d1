"""python manage.py load_hs_nomenclature PATH [PATH ...] [--language zh]"""
from __future__ import annotations

import json
import time

from django.core.management.base import BaseCommand, CommandError

from embeddings.errors import EmbeddingError
from verifier.nomenclature import (
    DEFAULT_NOTE_PASSAGES,
    NomenclatureFormatError,
    describe_missing,
    entries_missing_vectors,
    load_nomenclature,
)


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
                report = load_nomenclature(path, language=language, note_passages=note_passages,
                                           progress=ProgressBar(self.stderr, label=f"{path}: embedding evidence"))
            except NomenclatureFormatError as error:
                raise CommandError(str(error)) from error
            except EmbeddingError as error:
                # What was embedded is stored; the same command run again embeds only the rest.
                missing = describe_missing(entries_missing_vectors())
                raise CommandError(f"{path}: embedding stopped ({error}); {missing}; "
                                   "run the same command again to finish the load") from error
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


class ProgressBar:
    """A text progress bar on stderr: redrawn in place on a terminal, a line per tenth in a log.

    A long load shows how far it got; run again after an interruption, it starts from what is missing.
    """

    WIDTH = 30

    def __init__(self, stream, *, label: str) -> None:
        self.stream, self.label = stream, label
        self.interactive = stream.isatty()
        self.started = time.monotonic()
        self.last_tenth = -1

    def __call__(self, done: int, total: int) -> None:
        fraction = done / total if total else 1.0
        tenth = int(fraction * 10)
        if not self.interactive and tenth == self.last_tenth and done < total:
            return
        self.last_tenth = tenth
        filled = int(fraction * self.WIDTH)
        elapsed = time.monotonic() - self.started
        remaining = f", ~{elapsed / fraction - elapsed:.0f}s left" if 0 < fraction < 1 else ""
        line = (f"{self.label} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {done}/{total} "
                f"({fraction:.0%}{remaining})")
        if self.interactive:
            self.stream.write("\r" + line, ending="\n" if done >= total else "")
            self.stream.flush()
        else:
            self.stream.write(line)


def _json_line(payload: dict) -> str:
    return json.dumps(payload, ensure_ascii=False)
