"""Check sets: labelled descriptions with a declared code, some of them deliberately wrong.

Check mode exists to catch wrong declared codes, so it is measured on declarations whose codes are
known to be wrong. `make_check_set` turns any labelled file (id,description,hs_code[,language]) into
one: a share of the declarations get a wrong code, half of them a near miss (another heading of the
same chapter) and half a far one (a code of another chapter). Rows that are translations of one
source item (hsbench's `-zh`/`-en` twins) share one declaration, so they get the same code.
"""
from __future__ import annotations

import random
import re
from collections import defaultdict
from dataclasses import dataclass

from .labelled import LabelledDescription

NEAR = "near"
FAR = "far"
# A row id ending in a language tag is one translation of a source item: the stem names the declaration.
LANGUAGE_SUFFIX = re.compile(r"[-_](zh|en|cn|zh-hans|zh-hant)$", re.IGNORECASE)


@dataclass(frozen=True)
class CheckRow:
    row: LabelledDescription
    declared_code: str
    wrong: str  # "" for a right declaration, NEAR or FAR


def declaration_key(identifier: str) -> str:
    """The id of the declaration a row belongs to: zh/en twins with a shared stem are one declaration."""
    return LANGUAGE_SUFFIX.sub("", identifier)


def make_check_rows(
    rows: list[LabelledDescription], *, wrong_share: float, seed: int, other_codes: list[str] = (),
) -> list[CheckRow]:
    """Give each row a declared code: its label, or for `wrong_share` of the declarations a wrong one.

    1. Group rows by declaration (twins share one) and shuffle the declarations with `seed`.
    2. The first `wrong_share` of them are wrong: every other one a near miss (a code of another
       heading in the same chapter), the rest far (a code of another chapter).
    3. A wrong code has the label's length and is drawn from the labels of the file, then from
       `other_codes` (for example the nomenclature), so it is a real code.
    A declaration whose chapter has no other heading to draw from gets a far code instead.
    """
    if not 0 <= wrong_share <= 1:
        raise ValueError(f"wrong share {wrong_share} is not between 0 and 1")
    generator = random.Random(seed)
    pool = sorted({row.hs_code for row in rows} | {code for code in other_codes if code.isdigit()})
    codes_by_length: dict[int, list[str]] = defaultdict(list)
    for code in pool:
        codes_by_length[len(code)].append(code)

    declarations: dict[str, list[LabelledDescription]] = defaultdict(list)
    for row in rows:
        declarations[declaration_key(row.identifier)].append(row)
    keys = sorted(declarations)
    generator.shuffle(keys)
    wrong_count = round(len(keys) * wrong_share)
    declared: dict[str, tuple[str, str]] = {}
    for position, key in enumerate(keys):
        label = declarations[key][0].hs_code
        if position >= wrong_count:
            declared[key] = (label, "")
            continue
        kind = NEAR if position % 2 == 0 else FAR
        code = _wrong_code(label, kind=kind, codes=codes_by_length[len(label)], generator=generator)
        if code is None and kind == NEAR:
            kind, code = FAR, _wrong_code(label, kind=FAR, codes=codes_by_length[len(label)], generator=generator)
        declared[key] = (code, kind) if code else (label, "")
    return [CheckRow(row=row, declared_code=declared[declaration_key(row.identifier)][0],
                     wrong=declared[declaration_key(row.identifier)][1]) for row in rows]


def _wrong_code(label: str, *, kind: str, codes: list[str], generator: random.Random) -> str | None:
    if kind == NEAR:
        # Another heading of the same chapter: wrong at 4 digits, right at 2.
        candidates = [code for code in codes if code[:2] == label[:2] and code[:4] != label[:4]]
    else:
        candidates = [code for code in codes if code[:2] != label[:2]]
    return generator.choice(candidates) if candidates else None


def declared_is_right(declared_code: str, true_code: str) -> bool:
    """Compared at the deepest level both codes have, at most 6 digits (the evidence stops there)."""
    depth = min(len(declared_code), len(true_code), 6)
    return depth >= 2 and declared_code[:depth] == true_code[:depth]
