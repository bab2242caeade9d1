"""python manage.py evaluate_hs PATH [--json] [--nomenclature PATH ...]"""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from embeddings.errors import EmbeddingError
from verifier.evaluation import (
    evaluate_check_mode,
    evaluate_labelled,
    evaluate_prequential,
    measure_search_recall,
    searchable_descriptions,
)
from verifier.labelled import read_labelled_files
from verifier.models import KnowledgeEntry
from verifier.nomenclature import NomenclatureFormatError, describe_missing, entries_missing_vectors, load_nomenclature

COUNTS = {"n", "knn_lost", "check_n"}


class Command(BaseCommand):
    help = (
        "Score HS code recommendations on a labelled CSV (id,description,hs_code[,language]) through the production "
        "path (suggest mode) without storing anything: top-1 at 2/4/6 digits, top-3, tier shares, auto-pass precision. "
        "Rows with a declared_code (make_check_set writes such files) are also judged in check mode through the "
        "production import, pipeline and routing; --prequential N measures learning from approvals."
    )

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", help="labelled CSV file(s); several are scored together")
        parser.add_argument("--json", action="store_true", help="end with one JSON object of the figures")
        parser.add_argument(
            "--recall", action="store_true",
            help="also compare the production search with an exact scan: knn_recall (share of the true nearest "
                 "evidence returned) and knn_lost (descriptions that got none of it); slow",
        )
        parser.add_argument(
            "--prequential", type=int, default=0, metavar="N",
            help="shuffle the rows (fixed seed), judge them in N blocks and approve each block's true codes through "
                 "the review path before the next; figures per block (the references made are removed at the end)",
        )
        parser.add_argument("--seed", type=int, default=1, help="shuffle seed of --prequential")
        parser.add_argument(
            "--nomenclature", action="append", default=[],
            help="nomenclature CSV file or directory to load first when the knowledge base has none (repeatable)",
        )

    def handle(self, *args, paths: list[str], json: bool, nomenclature: list[str], recall: bool, prequential: int,
               seed: int, **options):
        for path in nomenclature:
            # Loading is idempotent and resumes: a load that stopped half-way is finished here, not skipped.
            try:
                loaded = load_nomenclature(path)
            except NomenclatureFormatError as error:
                raise CommandError(str(error)) from error
            except EmbeddingError as error:
                missing = describe_missing(entries_missing_vectors())
                raise CommandError(f"{path}: embedding stopped ({error}); {missing}; nothing was scored") from error
            self.stdout.write(f"loaded {path}: {loaded.codes_created} codes new, {loaded.entries_indexed} embedded")
        if not KnowledgeEntry.objects.exists():
            raise CommandError("the knowledge base is empty: load a nomenclature first (--nomenclature PATH)")
        missing = entries_missing_vectors()
        if missing:
            raise CommandError(f"the knowledge base is incomplete: {describe_missing(missing)}; figures against it "
                               "would be too low. Finish the load (load_hs_nomenclature PATH, or --nomenclature PATH "
                               "here) and run again")
        try:
            rows = read_labelled_files(paths, on_bad_row=lambda path, row_number, reason: self.stderr.write(
                f"{path} row {row_number}: {reason} (skipped)"))
        except (OSError, ValueError) as error:
            raise CommandError(str(error)) from error
        figures = evaluate_labelled(rows).to_json()
        checked = [row for row in rows if row.declared_code]
        if checked:
            figures.update(evaluate_check_mode(checked).to_json())
        if prequential:
            blocks = evaluate_prequential(rows, blocks=prequential, seed=seed)
            figures["prequential"] = [block.to_json() for block in blocks]
        if recall:
            search = measure_search_recall(searchable_descriptions(rows))
            figures.update(knn_recall=search.share, knn_lost=search.lost)
        for key, value in figures.items():
            if key == "prequential":
                for number, block in enumerate(value, start=1):
                    shown = ", ".join(f"{name} {'n/a' if v is None else round(v, 3)}" for name, v in block.items())
                    self.stdout.write(f"{'block ' + str(number):>15}: {shown}")
                continue
            shown = "n/a" if value is None else value if key in COUNTS or key.endswith("_n") else f"{value:.4f}"
            self.stdout.write(f"{key:>15}: {shown}")
        if json:
            self.stdout.write(_json_line(figures))


def _json_line(figures: dict) -> str:
    return json.dumps(figures)
