"""Labelled descriptions: rows of a CSV whose right HS code is known (evaluation, calibration, check sets)."""
from __future__ import annotations

import csv
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class LabelledDescription:
    row_number: int
    identifier: str
    description: str
    hs_code: str
    language: str
    declared_code: str = ""  # in a check file: the code declared for it, right or wrong


def read_labelled_csv(path) -> tuple[list[LabelledDescription], list[tuple[int, str]]]:
    """Rows of a labelled CSV (id,description,hs_code[,language][,declared_code]) and its bad rows
    (row number, reason)."""
    rows: list[LabelledDescription] = []
    bad_rows: list[tuple[int, str]] = []
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"description", "hs_code"} - {name.strip().lower() for name in reader.fieldnames or []}
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}; "
                             "expected id,description,hs_code[,language]")
        for row_number, raw in enumerate(reader, start=1):
            row = {(key or "").strip().lower(): (value or "").strip() for key, value in raw.items() if key}
            code = re.sub(r"[\s.]", "", row.get("hs_code", ""))
            if not code.isdigit() or len(code) not in (2, 4, 6, 8, 10):
                bad_rows.append((row_number, f"hs_code {row.get('hs_code', '')!r} is not an HS code of 2-10 digits"))
                continue
            declared = re.sub(r"[\s.]", "", row.get("declared_code", ""))
            if declared and (not declared.isdigit() or len(declared) not in (2, 4, 6, 8, 10)):
                bad_rows.append((row_number, f"declared_code {row.get('declared_code', '')!r} "
                                             "is not an HS code of 2-10 digits"))
                continue
            rows.append(LabelledDescription(
                row_number=row_number, identifier=row.get("id", "") or str(row_number),
                description=row.get("description", ""), hs_code=code, language=row.get("language", ""),
                declared_code=declared,
            ))
    return rows, bad_rows


def read_labelled_files(
    paths: Sequence[str], *, on_bad_row: Callable[[str, int, str], None],
) -> list[LabelledDescription]:
    """The rows of several labelled CSVs together; each bad row is reported (path, row number, reason) and
    skipped. Raises OSError or ValueError for a file that cannot be read at all."""
    rows: list[LabelledDescription] = []
    for path in paths:
        file_rows, bad_rows = read_labelled_csv(path)
        rows += file_rows
        for row_number, reason in bad_rows:
            on_bad_row(path, row_number, reason)
    return rows
