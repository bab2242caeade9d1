"""Which writing system a text is in: the one rule for Chinese characters, shared by every app and tool.

Knowledge vectors are split by it (verifier), FAQ texts get their language from it (faq), the
token estimate and the protocol double's lexical vectors read it too.
"""
from __future__ import annotations

import re

# CJK ideographs (unified, extension A, compatibility), as a regex class: PostgreSQL's `~` reads it too.
CJK_CHARACTER_CLASS = "[\u3400-\u9fff\uf900-\ufaff]"
_CJK = re.compile(CJK_CHARACTER_CLASS)


def contains_cjk(text: str) -> bool:
    return _CJK.search(text) is not None


def is_cjk(character: str) -> bool:
    # CJK_CHARACTER_CLASS for one character, as comparisons: this runs per character of every description.
    return "\u3400" <= character <= "\u9fff" or "\uf900" <= character <= "\ufaff"
