"""Row factories for verifier tests (plain functions: the project has no factory library)."""
from __future__ import annotations

import io
import itertools

from verifier.models import DeclarationBatch, DeclarationItem, HsCode, KnowledgeEntry, Verdict
from verifier.normalization import normalize_description

_sequence = itertools.count(1)


def make_batch(**fields) -> DeclarationBatch:
    return DeclarationBatch.objects.create(**{"source": DeclarationBatch.Source.API, **fields})


def make_item(*, batch: DeclarationBatch | None = None, **fields) -> DeclarationItem:
    number = next(_sequence)
    values = {"external_id": f"DECL-{number}", "item_no": "1", "identity_key": f"test-{number:059d}",
              "description_raw": "wireless bluetooth earphones", "declared_code": "851762"}
    values.update(fields)
    return DeclarationItem.objects.create(batch=batch or make_batch(), **values)


def make_verdict(*, item: DeclarationItem, **fields) -> Verdict:
    values = {"tier": Verdict.Tier.MANUAL_REVIEW, "recommended_code": "851762", "recommended_level": 6,
              "confidence": 0.5, "final_code": item.declared_code}
    values.update(fields)
    return Verdict.objects.create(item=item, **values)


def make_hs_code(code: str, description: str, *, language: str = "en") -> HsCode:
    line = HsCode.objects.create(code=code, language=language, description=description, level=len(code),
                                 parent_code=code[:-2] if len(code) > 2 else "")
    KnowledgeEntry.objects.create(source=KnowledgeEntry.Source.NOMENCLATURE, hs_code=code, chapter=code[:2],
                                  language=language, text=normalize_description(description), display_text=description,
                                  hs_code_line=line)
    return line


def csv_bytes(rows: list[dict], *, encoding: str = "utf-8") -> io.BytesIO:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = [",".join(columns)] + [",".join(_cell(row.get(column, "")) for column in columns) for row in rows]
    return io.BytesIO(("\n".join(lines) + "\n").encode(encoding))


def _cell(value) -> str:
    text = str(value)
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text
