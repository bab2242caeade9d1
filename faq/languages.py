"""Which language a customer's text is in: enough to pick an answer's translation and a centring mean."""
from __future__ import annotations

import re

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def detect_language(text: str) -> str:
    """'zh' when the text contains Chinese characters, else 'en'."""
    return "zh" if _CJK.search(text) else "en"
