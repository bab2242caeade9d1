"""Loading an HS nomenclature from CSV into HsCode lines and KnowledgeEntry evidence, and indexing that evidence.

Two CSV shapes are read:
- `hscode,description[,section,parent,level]` (the WCO HS 2022 list, English);
- `code,name[,description]` (the China tariff 2025 files, Chinese); a heading's long
  `description` (its explanatory note) is split into a few passages, each its own evidence.

Loading is idempotent: a line already loaded with the same words is left alone, and
only evidence whose embedded text has no vector yet in the active space is embedded.
"""
from __future__ import annotations

import csv
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.db import transaction

from common.scripts import contains_cjk
from embeddings.selectors import objects_without_current_vector
from embeddings.store import active_space

from .knowledge import delete_knowledge_vectors, index_knowledge_texts
from .models import KNOWLEDGE_CORPORA, HsCode, KnowledgeEntry
from .normalization import normalize_description

VALID_LEVELS = (2, 4, 6, 8, 10)
# The vote recommends at most 6 digits; national 8/10-digit lines are kept as codes (a declared
# code is recognised) but are not evidence, or a heading that a country splits finely would
# outvote one it does not split.
MAX_EVIDENCE_LEVEL = 6
INDEX_BATCH_SIZE = 256
# A heading's explanatory note is long; its first few descriptive passages carry product words, and
# each passage embedded on its own keeps them from being averaged away. Measured on the hsbench dev
# files: Chinese top-1 at 4 digits rose with them (README). They are ~3,200 longer texts to embed.
DEFAULT_NOTE_PASSAGES = 3
MAX_NOTE_PASSAGE_CHARACTERS = 120
# Lines that only say "Other ..." mean nothing without their parent's words.
GENERIC_PREFIXES = ("other", "其他", "其它")

_NOTE_STRUCTURE = re.compile(r"^(\d{2}\s*)?[—\-–]|^\d{2}\s*$|^[○\s]+$|^关\s*闭$|^\d{2}\.\d{2}")
_NOTE_NEW_TOPIC = re.compile(r"^([一二三四五六七八九十]+、|本品目包括|本品目还包括|本品目也包括)")
_NOTE_ELSEWHERE = ("不包括", "不归入", "归入品目", "归入第")
# A lead-in that names nothing once these words are gone ("本品目主要包括：", under 32 headings) is
# evidence for no heading in particular: it only fills reviewers' neighbour lists with noise.
_NOTE_BOILERPLATE = re.compile(
    r"本品目|本章|主要|还|也|通常|仅|包括|归入|的|有|即|如下|下列|各种|货品|物品|[：:，,。、\s]")


@dataclass(frozen=True)
class BadRow:
    file: str
    row_number: int  # 1-based data row (the header is not counted)
    reason: str


@dataclass
class NomenclatureReport:
    files: list[str] = field(default_factory=list)
    skipped_files: list[tuple[str, str]] = field(default_factory=list)
    rows_read: int = 0
    codes_created: int = 0
    codes_updated: int = 0
    codes_unchanged: int = 0
    entries_created: int = 0
    entries_updated: int = 0
    entries_removed: int = 0
    entries_indexed: int = 0
    bad_rows: list[BadRow] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            **{name: getattr(self, name) for name in (
                "rows_read", "codes_created", "codes_updated", "codes_unchanged", "entries_created",
                "entries_updated", "entries_removed", "entries_indexed",
            )},
            "files": self.files,
            "skipped_files": [{"file": name, "reason": reason} for name, reason in self.skipped_files],
            "bad_rows": [{"file": row.file, "row": row.row_number, "reason": row.reason} for row in self.bad_rows],
        }


@dataclass(frozen=True)
class ParsedLine:
    code: str
    description: str
    level: int
    parent_code: str
    section: str
    note_passages: tuple[str, ...] = ()


class NomenclatureFormatError(ValueError):
    """The file is not a nomenclature CSV this loader understands."""


def load_nomenclature(
    path: str | Path, *, language: str | None = None, note_passages: int = DEFAULT_NOTE_PASSAGES,
    progress: Callable[[int, int], None] | None = None,
) -> NomenclatureReport:
    """Load one CSV file, or every CSV file of a directory, into the knowledge base and index its evidence.

    1. Parse every file (bad rows are reported with their row numbers and skipped).
    2. Create or update the HsCode lines, per language.
    3. Create or update one KnowledgeEntry per line of at most 6 digits (its text enriched with its
       parent's words when it only says "Other"), plus the passages of each heading's note.
    4. Embed and index the entries that have no vector for their current text in the active space.
    """
    report = NomenclatureReport()
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.csv"))
        if not files:
            raise NomenclatureFormatError(f"{path}: no .csv files in this directory")
    elif path.is_file():
        files = [path]
    else:
        raise NomenclatureFormatError(f"{path}: no such file or directory")
    lines_by_language: dict[str, dict[str, ParsedLine]] = {}
    for file in files:
        try:
            lines, bad_rows, file_language, rows_read = parse_nomenclature_file(
                file, language=language, note_passages=note_passages,
            )
        except NomenclatureFormatError as error:
            if not path.is_dir():
                raise
            report.skipped_files.append((file.name, str(error)))
            continue
        report.files.append(file.name)
        report.rows_read += rows_read
        report.bad_rows.extend(bad_rows)
        lines_by_language.setdefault(file_language, {}).update({line.code: line for line in lines})
    entry_ids: list[int] = []
    for file_language, lines in lines_by_language.items():
        code_lines = _upsert_codes(lines=lines, language=file_language, report=report)
        entry_ids += _upsert_entries(lines=lines, code_lines=code_lines, language=file_language, report=report)
    report.entries_indexed = index_missing_vectors(entry_ids=entry_ids, progress=progress)
    return report


def parse_nomenclature_file(
    file: Path, *, language: str | None = None, note_passages: int = DEFAULT_NOTE_PASSAGES,
) -> tuple[list[ParsedLine], list[BadRow], str, int]:
    """The lines of one CSV file, its bad rows, its language (given, or guessed from its script) and rows read."""
    lines: list[ParsedLine] = []
    bad_rows: list[BadRow] = []
    rows_read = 0
    with open(file, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        columns = {name.strip().lower() for name in reader.fieldnames or []}
        if {"hscode", "description"} <= columns:
            code_column, text_column, note_column = "hscode", "description", None
        elif {"code", "name"} <= columns:
            code_column, text_column, note_column = "code", "name", "description" if "description" in columns else None
        else:
            raise NomenclatureFormatError(
                f"{file.name}: expected columns hscode,description[,section,parent,level] or code,name[,description]; "
                f"found {','.join(reader.fieldnames or []) or 'no header'}"
            )
        valid_codes = 0
        for row_number, raw_row in enumerate(reader, start=1):
            rows_read += 1
            row = {(key or "").strip().lower(): (value or "").strip() for key, value in raw_row.items() if key}
            if row.get(code_column, "").upper() == "TOTAL":
                continue  # the root of the HS 2022 list ("all commodities"), not a code
            line, reason = _parse_row(
                row, code_column=code_column, text_column=text_column, note_column=note_column,
                max_passages=note_passages,
            )
            if line is None:
                bad_rows.append(BadRow(file=file.name, row_number=row_number, reason=reason))
                continue
            valid_codes += 1
            lines.append(line)
    if rows_read and not valid_codes:
        # A list of sections ("1类", "I") has the right columns but no HS codes: not a nomenclature level.
        raise NomenclatureFormatError(f"{file.name}: none of its {rows_read} rows has an HS code of 2-10 digits")
    detected = language or _guess_language([line.description for line in lines[:200]])
    return lines, bad_rows, detected, rows_read


def _parse_row(
    row: dict[str, str], *, code_column: str, text_column: str, note_column: str | None, max_passages: int,
) -> tuple[ParsedLine | None, str]:
    raw_code = row.get(code_column, "")
    code = re.sub(r"[\s.]", "", unicodedata.normalize("NFKC", raw_code))
    if not code.isdigit() or len(code) not in VALID_LEVELS:
        return None, f"code {raw_code!r} is not an HS code of 2, 4, 6, 8 or 10 digits"
    description = row.get(text_column, "")
    if not description:
        return None, f"code {code} has an empty {text_column}"
    if row.get("level") and row["level"].isdigit() and int(row["level"]) != len(code):
        return None, f"code {code} has {len(code)} digits but its level says {row['level']}"
    parent = re.sub(r"[\s.]", "", row.get("parent", ""))
    if not parent.isdigit():  # "TOTAL" above chapters, or no parent column
        parent = code[:-2] if len(code) > 2 else ""
    if len(code) == 10 and parent == code[:-2] and code[8:] == "00":
        parent = code[:6]
    notes = ()
    if note_column and len(code) == 4 and max_passages > 0:
        notes = tuple(note_passages(row.get(note_column, ""), max_passages=max_passages))
    return ParsedLine(
        code=code, description=description, level=len(code), parent_code=parent,
        section=row.get("section", "")[:8], note_passages=notes,
    ), ""


def note_passages(note: str, *, max_passages: int = 3) -> Iterator[str]:
    """The descriptive passages of a heading's explanatory note: no subheading lists, no exclusions."""
    count, excluded = 0, False
    for line in note.splitlines():
        line = line.strip()
        if not line or _NOTE_STRUCTURE.match(line):
            continue
        # Exclusions name products that belong elsewhere: evidence for the wrong heading.
        if any(marker in line for marker in _NOTE_ELSEWHERE):
            excluded = "不包括" in line or excluded
            continue
        if excluded and not _NOTE_NEW_TOPIC.match(line):
            continue
        excluded = False
        if len(line) < 8 or not _NOTE_BOILERPLATE.sub("", line):
            continue
        yield line[:MAX_NOTE_PASSAGE_CHARACTERS]
        count += 1
        if count >= max_passages:
            return


def _guess_language(texts: list[str]) -> str:
    cjk = sum(1 for text in texts if contains_cjk(text))
    return "zh" if texts and cjk * 2 >= len(texts) else "en"


@transaction.atomic
def _upsert_codes(*, lines: dict[str, ParsedLine], language: str, report: NomenclatureReport) -> dict[str, HsCode]:
    existing = {row.code: row for row in HsCode.objects.filter(language=language, code__in=list(lines))}
    to_create, to_update = [], []
    for code, line in lines.items():
        values = {"description": line.description, "level": line.level, "parent_code": line.parent_code,
                  "section": line.section}
        row = existing.get(code)
        if row is None:
            to_create.append(HsCode(code=code, language=language, **values))
        elif any(getattr(row, name) != value for name, value in values.items()):
            for name, value in values.items():
                setattr(row, name, value)
            to_update.append(row)
        else:
            report.codes_unchanged += 1
    HsCode.objects.bulk_create(to_create, batch_size=2000)
    HsCode.objects.bulk_update(to_update, ["description", "level", "parent_code", "section"], batch_size=2000)
    report.codes_created += len(to_create)
    report.codes_updated += len(to_update)
    return {row.code: row for row in HsCode.objects.filter(language=language, code__in=list(lines))}


def evidence_text(*, code: str, descriptions: dict[str, str], parents: dict[str, str]) -> str:
    """The embedded text of a line: its words, after its parent's when it only says "Other ..."."""
    own = normalize_description(descriptions[code])
    parent = parents.get(code, "")
    if own.startswith(GENERIC_PREFIXES) and parent in descriptions:
        return f"{evidence_text(code=parent, descriptions=descriptions, parents=parents)}: {own}"
    return own


@transaction.atomic
def _upsert_entries(
    *, lines: dict[str, ParsedLine], code_lines: dict[str, HsCode], language: str, report: NomenclatureReport,
) -> list[int]:
    """Create or update this language's nomenclature evidence; the ids of all its entries, chapters first."""
    # Ancestors may come from an earlier load (a chapter file loaded on its own).
    all_lines = list(HsCode.objects.filter(language=language).values_list("code", "description", "parent_code"))
    descriptions = {code: description for code, description, _ in all_lines}
    parents = {code: parent for code, _, parent in all_lines}
    evidence_lines = [code_lines[code] for code in lines if len(code) <= MAX_EVIDENCE_LEVEL]
    existing = {
        entry.hs_code_line_id: entry
        for entry in KnowledgeEntry.objects.filter(
            source=KnowledgeEntry.Source.NOMENCLATURE, hs_code_line__in=evidence_lines,
        )
    }
    to_create, to_update = [], []
    for line in evidence_lines:
        text = evidence_text(code=line.code, descriptions=descriptions, parents=parents)
        entry = existing.get(line.id)
        if entry is None:
            to_create.append(KnowledgeEntry(
                source=KnowledgeEntry.Source.NOMENCLATURE, hs_code=line.code, chapter=line.code[:2],
                language=language, text=text, display_text=line.description, hs_code_line=line,
            ))
        elif (entry.text, entry.display_text) != (text, line.description):
            entry.text, entry.display_text = text, line.description
            to_update.append(entry)
    # Note passages have no line of their own (one line, many passages): they are keyed by their text.
    notes = {(code, normalize_description(passage)): passage
             for code, line in lines.items() for passage in line.note_passages}
    note_codes = {code for code, line in lines.items() if line.level == 4}
    stale_notes = []
    for entry in KnowledgeEntry.objects.filter(
        source=KnowledgeEntry.Source.NOMENCLATURE, hs_code_line__isnull=True, language=language,
        hs_code__in=note_codes,
    ):
        if notes.pop((entry.hs_code, entry.text), None) is None:
            stale_notes.append(entry.id)
    for (code, text), passage in notes.items():
        to_create.append(KnowledgeEntry(
            source=KnowledgeEntry.Source.NOMENCLATURE, hs_code=code, chapter=code[:2], language=language,
            text=text, display_text=passage,
        ))
    KnowledgeEntry.objects.bulk_create(to_create, batch_size=2000)
    KnowledgeEntry.objects.bulk_update(to_update, ["text", "display_text"], batch_size=2000)
    if stale_notes:
        KnowledgeEntry.objects.filter(id__in=stale_notes).delete()
        delete_knowledge_vectors(entry_ids=stale_notes)
    report.entries_created += len(to_create)
    report.entries_updated += len(to_update)
    report.entries_removed += len(stale_notes)
    codes = list(lines)
    return list(
        KnowledgeEntry.objects.filter(source=KnowledgeEntry.Source.NOMENCLATURE, language=language, hs_code__in=codes)
        .order_by("hs_code_line__level", "id").values_list("id", flat=True)
    )


def index_missing_vectors(*, entry_ids: list[int], progress: Callable[[int, int], None] | None = None) -> int:
    """Embed and store the entries whose current text has no vector in the active space; how many were embedded.

    `progress(done, total)` is called after each stored batch (a load run again after an interruption
    starts with only what is still missing, so its total is the rest).
    """
    if not entry_ids:
        return 0
    texts = dict(KnowledgeEntry.objects.filter(id__in=entry_ids).values_list("id", "text"))
    missing = entries_missing_vectors(entry_ids=entry_ids)
    for start in range(0, len(missing), INDEX_BATCH_SIZE):
        batch = missing[start:start + INDEX_BATCH_SIZE]
        # Each batch commits on its own: an interrupted load resumes where it stopped.
        index_knowledge_texts(entry_ids=batch, texts=[texts[entry_id] for entry_id in batch])
        if progress is not None:
            progress(start + len(batch), len(missing))
    return len(missing)


def entries_missing_vectors(*, entry_ids: list[int] | None = None) -> list[int]:
    """The knowledge entries (these, or all) with no vector for their current text in the active space.

    A load interrupted half-way (an embedding timeout, a killed process) leaves exactly these behind.
    """
    texts = dict(KnowledgeEntry.objects.filter(**({"id__in": entry_ids} if entry_ids is not None else {}))
                 .values_list("id", "text"))
    return objects_without_current_vector(space=active_space(), corpus=KNOWLEDGE_CORPORA, texts=texts)


def describe_missing(entry_ids: list[int], *, examples: int = 5) -> str:
    """'N knowledge entries have no vector (codes 0101, 8517, ...)' for a message to an operator."""
    codes = list(KnowledgeEntry.objects.filter(id__in=entry_ids[:examples]).values_list("hs_code", flat=True))
    more = ", ..." if len(entry_ids) > examples else ""
    return f"{len(entry_ids)} knowledge entries have no vector in the active space (codes {', '.join(codes)}{more})"
