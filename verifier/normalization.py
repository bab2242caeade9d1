"""Normalisation of product descriptions before they are embedded (the raw text is kept elsewhere).

The same function runs on declarations and on nomenclature evidence, so both sides
of a comparison are written the same way. It keeps meaning: numbers, measurement
limits ("≤185g") and units stay, because HS subheadings are often split by them.
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

from common.scripts import is_cjk

# Unit spellings folded into one form, so "20KGS", "20 公斤" and "20kg" read the same.
UNIT_SYNONYMS = {
    "kgs": "kg", "kilogram": "kg", "kilograms": "kg", "公斤": "kg", "千克": "kg",
    "grams": "g", "gram": "g", "gr": "g", "克": "g",
    "ltr": "l", "litre": "l", "liter": "l", "litres": "l", "liters": "l", "升": "l",
    "millilitre": "ml", "milliliter": "ml", "毫升": "ml",
    "pcs": "pc", "pieces": "pc", "piece": "pc",
}
_UNIT_PATTERN = "|".join(sorted((re.escape(unit) for unit in UNIT_SYNONYMS), key=len, reverse=True))
# A number followed by a unit: "20kg", "1.5 ltr", "500克". Latin units must end at a word boundary.
_NUMBER_UNIT = re.compile(rf"(\d+(?:\.\d+)?)\s*({_UNIT_PATTERN})(?![a-z])")
# A number glued to a latin unit or word ("20kg", "5mm"): split so the unit is a token of its own.
_NUMBER_GLUED_TO_LETTERS = re.compile(r"(\d)([a-z])")

# Placeholders that name no product: a verdict on them would be a guess.
PLACEHOLDERS = {
    "n/a", "na", "none", "null", "nil", "unknown", "test", "tbd", "see attached", "see invoice",
    "goods", "item", "items", "product", "products", "sample", "samples", "misc", "miscellaneous", "various",
    "无", "暂无", "未知", "见附件", "见发票", "货物", "商品", "样品", "产品", "物品", "测试", "其他", "杂项",
}
MIN_LATIN_LETTERS = 3
MIN_CJK_CHARACTERS = 1


def normalize_description(text: str, *, glossary: dict[str, str] | None = None) -> str:
    """The description written one canonical way: NFKC, lower case, clean symbols and spacing, units, glossary."""
    # Symbols go first: NFKC would spell "™" as "TM". Then NFKC folds full-width letters, digits and
    # punctuation (and the ideographic space) to their ASCII forms.
    normalized = (text or "").translate(_CLEANED)
    normalized = unicodedata.normalize("NFKC", normalized).casefold().translate(_CLEANED)
    if glossary:
        normalized = apply_glossary(normalized, glossary=glossary)
    normalized = _NUMBER_UNIT.sub(lambda match: f"{match.group(1)} {UNIT_SYNONYMS[match.group(2)]}", normalized)
    normalized = _NUMBER_GLUED_TO_LETTERS.sub(r"\1 \2", normalized)
    # Runs of the same punctuation ("!!!", "***", "---") carry no meaning.
    normalized = re.sub(r"([^\w\s])\1+", r"\1", normalized)
    normalized = re.sub(r"\s+", " ", normalized)
    return normalized.strip(" ,;:.-_/|")


def apply_glossary(text: str, *, glossary: dict[str, str]) -> str:
    """Replace abbreviations and synonyms; latin terms only as whole words, CJK terms anywhere."""
    for term, replacement in sorted(glossary.items(), key=lambda pair: len(pair[0]), reverse=True):
        term = unicodedata.normalize("NFKC", term).casefold().strip()
        if not term:
            continue
        replacement = unicodedata.normalize("NFKC", replacement).casefold()
        if re.search(r"[a-z0-9]", term):
            text = re.sub(rf"(?<![a-z0-9]){re.escape(term)}(?![a-z0-9])", replacement, text)
        else:
            text = text.replace(term, replacement)
    return text


def meaningless_reason(text: str) -> str | None:
    """Why this description cannot be judged (empty, only symbols or numbers, a placeholder), else None."""
    if not text or not text.strip():
        return "the description is empty"
    normalized = normalize_description(text)
    latin_letters = sum(1 for character in normalized if "a" <= character <= "z")
    cjk_characters = sum(1 for character in normalized if is_cjk(character))
    other_letters = sum(
        1 for character in normalized
        if character.isalpha() and not ("a" <= character <= "z") and not is_cjk(character)
    )
    if latin_letters + cjk_characters + other_letters == 0:
        return f"the description {text.strip()[:40]!r} has no words, only numbers or symbols"
    if normalized in PLACEHOLDERS:
        return f"the description {text.strip()[:40]!r} is a placeholder that names no product"
    if cjk_characters < MIN_CJK_CHARACTERS and latin_letters + other_letters < MIN_LATIN_LETTERS:
        return f"the description {text.strip()[:40]!r} is too short to name a product"
    return None


def _clean_character(character: str) -> str:
    category = unicodedata.category(character)
    if category in ("Cc", "Cf", "Zl", "Zp") or character in "\t\r\n":
        return " "
    # Other symbols (emoji, ®, ™, dingbats), private-use and unassigned code points carry no product meaning.
    if category in ("So", "Sk", "Co", "Cn", "Cs"):
        return " "
    if character in "*#@^~`|\\_[]{}":
        return " "
    return character


class _CleanedCharacters(dict):
    """A str.translate table filled on first sight of each character: descriptions reuse few characters,
    and a per-character Python call was the costliest part of normalising."""

    def __missing__(self, code_point: int) -> str:
        cleaned = _clean_character(chr(code_point))
        if len(self) < _CLEANED_CACHE_LIMIT:  # bounded, whatever text arrives
            self[code_point] = cleaned
        return cleaned


_CLEANED_CACHE_LIMIT = 50_000


_CLEANED = _CleanedCharacters()


# The pipeline's name for the same question.
is_meaningless = meaningless_reason


def item_text(description: str, product_name: str = "") -> str:
    """The text that stands for an item: its description, with the product name when it adds words."""
    if product_name and product_name.lower() not in description.lower():
        return f"{product_name} {description}"
    return description


@dataclass(frozen=True)
class SearchableDescription:
    text: str  # normalised: what is embedded and searched; "" when nothing is
    unsearchable_reason: str | None  # why it is not searched (empty, meaningless), else None


def searchable_description(description: str, *, product_name: str = "",
                           glossary: Mapping[str, str] | None = None) -> SearchableDescription:
    """The one rule for what an item's search reads: the meaningless check reads the same text that is searched."""
    text = item_text(description, product_name)
    reason = meaningless_reason(text)
    normalized = "" if reason else normalize_description(text, glossary=glossary)
    if reason is None and not normalized:
        reason = "the description is empty after normalisation"
    return SearchableDescription(text=normalized, unsearchable_reason=reason)
