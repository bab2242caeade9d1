"""python manage.py make_check_set LABELLED.csv --wrong 0.3 --seed N --out FILE"""
from __future__ import annotations

import csv

from django.core.management.base import BaseCommand, CommandError

from verifier.check_sets import make_check_rows
from verifier.labelled import read_labelled_files
from verifier.models import HsCode


class Command(BaseCommand):
    help = (
        "Write a check-mode evaluation file from labelled CSVs (id,description,hs_code[,language]): every row gets "
        "a declared_code, the label for most declarations and a wrong code for --wrong of them (half another "
        "heading of the same chapter, half another chapter; zh/en twins with one id stem share a declaration)."
    )

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", help="labelled CSV file(s)")
        parser.add_argument("--wrong", type=float, default=0.3, help="share of declarations given a wrong code")
        parser.add_argument("--seed", type=int, default=1, help="random seed (the same seed writes the same file)")
        parser.add_argument("--out", required=True, help="where to write the check file")

    def handle(self, *args, paths: list[str], wrong: float, seed: int, out: str, **options):
        try:
            rows = read_labelled_files(paths, on_bad_row=lambda path, row_number, reason: self.stderr.write(
                f"{path} row {row_number}: {reason} (skipped)"))
        except (OSError, ValueError) as error:
            raise CommandError(str(error)) from error
        # Wrong codes come from the file's own labels first; the nomenclature, where loaded, widens the choice.
        nomenclature_codes = list(HsCode.objects.filter(level__in=(4, 6)).values_list("code", flat=True).distinct())
        try:
            check_rows = make_check_rows(rows, wrong_share=wrong, seed=seed, other_codes=nomenclature_codes)
        except ValueError as error:
            raise CommandError(str(error)) from error
        with open(out, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "description", "hs_code", "declared_code", "language", "wrong"])
            for check in check_rows:
                writer.writerow([check.row.identifier, check.row.description, check.row.hs_code, check.declared_code,
                                 check.row.language, check.wrong])
        wrong_rows = sum(1 for check in check_rows if check.wrong)
        self.stdout.write(f"wrote {out}: {len(check_rows)} rows, {wrong_rows} with a wrong declared code "
                          f"({sum(1 for c in check_rows if c.wrong == 'near')} near, "
                          f"{sum(1 for c in check_rows if c.wrong == 'far')} far)")
