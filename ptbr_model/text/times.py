"""Times of day: "14h30" and "14:30" -> "catorze horas e trinta minutos", "1h" -> "uma hora".

Plain hours ("8h") are a unit and are read by the units module.
"""

from __future__ import annotations

import re

from .number_words import cardinal
from .spacing import spaced

_MAX_HOUR = 24
_MAX_MINUTE_OR_SECOND = 59

_H_NOTATION = re.compile(r"(?<![\d.,])(?P<hours>\d{1,2}) ?h ?(?P<minutes>\d{2})(?: ?min| ?m)?(?![^\W_])")
_COLON_NOTATION = re.compile(
    r"(?<![\d.,:])(?P<hours>\d{1,2}):(?P<minutes>\d{2})(?::(?P<seconds>\d{2}))?(?: ?(?:hs|hrs|h)(?![^\W_]))?(?![\d:])"
)


def _amount(value: int, singular: str, plural: str, *, feminine: bool = False) -> str:
    return f"{cardinal(value, feminine=feminine)} {singular if value == 1 else plural}"


def time_words(hours: int, minutes: int, seconds: int = 0) -> str:
    """14, 30 -> 'catorze horas e trinta minutos'; midnight is 'zero hora'."""
    hour_noun = "hora" if hours in (0, 1) else "horas"
    spoken = [f"{cardinal(hours, feminine=True)} {hour_noun}"]
    if minutes:
        spoken.append(_amount(minutes, "minuto", "minutos"))
    if seconds:
        spoken.append(_amount(seconds, "segundo", "segundos"))
    return " e ".join(spoken)


def _read_time(match: re.Match[str]) -> str:
    hours, minutes = int(match.group("hours")), int(match.group("minutes"))
    seconds = int(match.groupdict().get("seconds") or 0)
    if hours > _MAX_HOUR or minutes > _MAX_MINUTE_OR_SECOND or seconds > _MAX_MINUTE_OR_SECOND:
        return match.group(0)
    return spaced(match, time_words(hours, minutes, seconds))


def expand_times(text: str) -> str:
    """'14h30', '14h30min', '14:30', '14:30:15', '14:30h'."""
    text = _H_NOTATION.sub(_read_time, text)
    if ":" in text:
        text = _COLON_NOTATION.sub(_read_time, text)
    return text
