"""Keep expanded words apart from the letters and digits around them ("MP3" -> "MP três")."""

from __future__ import annotations

import re


def spaced(match: re.Match[str], words: str) -> str:
    """Return ``words`` with a space added on each side that touches a letter or a digit."""
    text = match.string
    start, end = match.span()
    before = " " if start > 0 and text[start - 1].isalnum() else ""
    after = " " if end < len(text) and text[end].isalnum() else ""
    return f"{before}{words}{after}"
