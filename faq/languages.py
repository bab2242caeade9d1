"""Which language a customer's text is in: enough to pick an answer's translation and a centring mean."""
from __future__ import annotations

from common.scripts import contains_cjk


def detect_language(text: str) -> str:
    """'zh' when the text contains Chinese characters, else 'en'."""
    return "zh" if contains_cjk(text) else "en"
