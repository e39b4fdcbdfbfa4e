"""Subtitle files for dubbing: SRT and WebVTT to timed cues, and how each cue's speech fits its time slot.

Parsing is strict, and every refusal names the line (1-based) it is about:

- bytes: UTF-8 (a BOM is allowed), else Latin-1 (Windows-1252, its superset used by most subtitle editors; bytes it
  leaves undefined fall back to ISO 8859-1); NUL bytes mean a binary file;
- SRT: each block (lines between blank lines) is parsed by the ``srt`` library; its timing line must also match
  ``HH:MM:SS,mmm --> HH:MM:SS,mmm`` exactly (the library also takes ``0:0:1,5``, which it reads as 1.005 s);
- WebVTT: the ``WEBVTT`` header, then NOTE/STYLE/REGION blocks (skipped) and cues (optional identifier, timing
  line ``[HH:]MM:SS.mmm --> [HH:]MM:SS.mmm [settings]``, payload), following the W3C timing grammar. No library
  here: ``webvtt-py`` silently drops a cue whose timing line is malformed and rounds times to whole seconds in
  ``start_in_seconds``, which a dub cannot use (the tests check that both read valid files alike);
- every cue: end after start, text within the limit; cues are ordered by start time and no two start together.

Cue text is made readable: tags (``<i>``, ``<v Ana>``, ``{\\an8}``) are removed, HTML entities decoded and lines
joined with spaces. A cue left with no text is kept (it is reported, and stays silent).
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass

__all__ = [
    "Cue",
    "CueFit",
    "SubtitleError",
    "SubtitleTrack",
    "cue_text",
    "decode_subtitles",
    "fit_cue",
    "parse_subtitles",
]


class SubtitleError(ValueError):
    """A subtitle file that cannot be used; ``line`` is 1-based (None when the problem is the whole file)."""

    def __init__(self, line: int | None, problem: str) -> None:
        self.line = line
        self.problem = problem
        super().__init__(f"line {line}: {problem}" if line is not None else problem)

    def __reduce__(self):
        return (type(self), (self.line, self.problem))


@dataclass(frozen=True)
class Cue:
    index: int  # 1-based position in the file
    line: int  # the line of its timing ("-->") line
    start: float  # seconds
    end: float
    text: str  # readable text: no tags, lines joined with spaces (may be empty)


@dataclass(frozen=True)
class SubtitleTrack:
    format: str  # "srt" or "vtt"
    encoding: str  # "utf-8" or "latin-1"
    cues: tuple[Cue, ...]


# ------------------------------------------------------------------------------------------------ decoding


def decode_subtitles(data: bytes) -> tuple[str, str]:
    """(text, encoding): UTF-8 when the bytes are valid UTF-8 (BOM removed), else Latin-1 (Windows-1252)."""
    if b"\x00" in data:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        raise SubtitleError(line, "holds NUL bytes: not a text file (UTF-16 is not supported; save as UTF-8)")
    try:
        text, encoding = data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError:  # 0x81, 0x8D, 0x8F, 0x90, 0x9D are undefined in Windows-1252
            text = data.decode("latin-1")
        encoding = "latin-1"
    return text.replace("\r\n", "\n").replace("\r", "\n"), encoding


# ------------------------------------------------------------------------------------------------ text

_TAG = re.compile(r"<[^>\n]*>")
_ASS_OVERRIDE = re.compile(r"\{\\[^}\n]*\}")
_SPACES = re.compile(r"\s+")


def cue_text(payload: str) -> str:
    """Readable text of a cue payload: tags and ASS overrides removed, entities decoded, lines joined."""
    text = _ASS_OVERRIDE.sub("", _TAG.sub("", payload))
    return _SPACES.sub(" ", html.unescape(text)).strip()


# ------------------------------------------------------------------------------------------------ parsing

_SRT_TIME = r"(\d{1,2}):([0-5]\d):([0-5]\d)[,.](\d{3})"
_SRT_TIMING = re.compile(rf"^\s*{_SRT_TIME}\s*-->\s*{_SRT_TIME}(?:\s+.*)?$")
_VTT_TIME = r"(?:(\d{2,}):)?([0-5]\d):([0-5]\d)\.(\d{3})"
_VTT_TIMING = re.compile(rf"^{_VTT_TIME}[ \t]+-->[ \t]+{_VTT_TIME}(?:[ \t]+.*)?$")
_VTT_HEADER = re.compile(r"^WEBVTT(?:[ \t].*)?$")
_LOOKS_TIMED = re.compile(r"^\s*\d+:\d")
_VTT_SPECIAL = re.compile(r"^(NOTE|STYLE|REGION)(?:[ \t]|$)")


def _seconds(hours: str | None, minutes: str, seconds: str, millis: str) -> float:
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds) + int(millis) / 1000


def _blocks(lines: list[str], first: int = 0) -> list[tuple[int, list[str]]]:
    """Groups of non-blank lines with the 0-based index of their first line."""
    blocks: list[tuple[int, list[str]]] = []
    current: list[str] = []
    start = first
    for number in range(first, len(lines)):
        if lines[number].strip():
            if not current:
                start = number
            current.append(lines[number])
        elif current:
            blocks.append((start, current))
            current = []
    if current:
        blocks.append((start, current))
    return blocks


def _parse_srt(lines: list[str]) -> list[Cue]:
    import srt

    cues: list[Cue] = []
    for first, block in _blocks(lines):
        timing = next((i for i, line in enumerate(block) if "-->" in line), None)
        if timing is None:
            if block[0].strip().isdigit() and len(block) > 1:  # a cue number, then a broken timing line
                raise SubtitleError(first + 2, f"timing must be 'HH:MM:SS,mmm --> HH:MM:SS,mmm', got "
                                    f"{_shown(block[1])}")
            raise SubtitleError(first + 1, f"expected a cue (number, then 'HH:MM:SS,mmm --> HH:MM:SS,mmm'), got "
                                f"{_shown(block[0])}")
        if timing > 1:
            raise SubtitleError(first + 2, f"expected the timing line after the cue number, got {_shown(block[1])}")
        match = _SRT_TIMING.match(block[timing])
        if match is None:
            raise SubtitleError(first + timing + 1, f"timing must be 'HH:MM:SS,mmm --> HH:MM:SS,mmm', got "
                                f"{_shown(block[timing])}")
        try:
            parsed = list(srt.parse("\n".join(block) + "\n"))
        except srt.SRTParseError as exc:
            offset_line = "\n".join(block)[: exc.actual_start].count("\n")
            raise SubtitleError(first + offset_line + 1, f"not an SRT cue: {_shown(block[offset_line])}") from None
        if len(parsed) != 1:
            raise SubtitleError(first + 1, "expected one cue in this block (is a blank line missing?)")
        groups = match.groups()
        start, end = _seconds(*groups[0:4]), _seconds(*groups[4:8])
        cues.append(Cue(index=len(cues) + 1, line=first + timing + 1, start=start, end=end,
                        text=cue_text(parsed[0].content)))
    return cues


def _parse_vtt(lines: list[str]) -> list[Cue]:
    if not lines or _VTT_HEADER.match(lines[0]) is None:
        raise SubtitleError(1, "a WebVTT file must start with 'WEBVTT'")
    cues: list[Cue] = []
    blocks = _blocks(lines, first=1)
    if blocks and blocks[0][0] == 1:  # header lines (e.g. "Kind: captions") directly under WEBVTT
        if any("-->" in line for line in blocks[0][1]):
            raise SubtitleError(2, "a blank line must separate the WEBVTT header from the first cue")
        blocks = blocks[1:]
    for first, block in blocks:
        head = block[0]
        special = _VTT_SPECIAL.match(head)
        if special is not None:
            if special.group(1) != "NOTE" and cues:
                raise SubtitleError(first + 1, f"{special.group(1)} blocks must come before the first cue")
            continue
        timing = 0 if "-->" in head else 1
        if timing >= len(block) or "-->" not in block[timing]:
            wrong = 0 if _LOOKS_TIMED.match(head) else 1  # a broken timing line, or an identifier without one
            got = block[wrong] if wrong < len(block) else ""
            raise SubtitleError(first + 1 + wrong, f"expected a timing line '[HH:]MM:SS.mmm --> [HH:]MM:SS.mmm', "
                                f"got {_shown(got)}")
        match = _VTT_TIMING.match(block[timing])
        if match is None:
            raise SubtitleError(first + timing + 1, f"timing must be '[HH:]MM:SS.mmm --> [HH:]MM:SS.mmm', got "
                                f"{_shown(block[timing])}")
        groups = match.groups()
        start, end = _seconds(*groups[0:4]), _seconds(*groups[4:8])
        payload = "\n".join(block[timing + 1:])
        if "-->" in payload:
            raise SubtitleError(first + timing + 2 + payload[: payload.index("-->")].count("\n"),
                                "'-->' inside a cue's text (is a blank line missing before this cue?)")
        cues.append(Cue(index=len(cues) + 1, line=first + timing + 1, start=start, end=end, text=cue_text(payload)))
    return cues


def _shown(line: str, limit: int = 60) -> str:
    return repr(line if len(line) <= limit else line[:limit] + "…")


def parse_subtitles(
    data: bytes,
    *,
    filename: str | None = None,
    max_cues: int = 5000,
    max_cue_chars: int = 500,
    max_seconds: float = 6 * 3600.0,
) -> SubtitleTrack:
    """The cues of an SRT or WebVTT file (WebVTT when it starts with ``WEBVTT`` or is named ``*.vtt``)."""
    text, encoding = decode_subtitles(data)
    lines = text.split("\n")
    is_vtt = text.lstrip("\ufeff").startswith("WEBVTT") or (filename or "").lower().endswith(".vtt")
    cues = _parse_vtt(lines) if is_vtt else _parse_srt(lines)
    if not cues:
        raise SubtitleError(None, "the file holds no cues")
    if len(cues) > max_cues:
        raise SubtitleError(cues[max_cues].line, f"{len(cues)} cues is over the {max_cues}-cue limit "
                            "(PTBR_MAX_SUBTITLE_CUES)")
    for cue in cues:
        if cue.end <= cue.start:
            raise SubtitleError(cue.line, f"the cue ends ({cue.end:.3f} s) before it starts ({cue.start:.3f} s)")
        if cue.end > max_seconds:
            raise SubtitleError(cue.line, f"the cue ends at {cue.end:.3f} s, past the {max_seconds:g}-second track "
                                "limit (PTBR_MAX_TRACK_SECONDS)")
        if len(cue.text) > max_cue_chars:
            raise SubtitleError(cue.line, f"the cue's text has {len(cue.text)} characters, over the "
                                f"{max_cue_chars}-character limit (PTBR_MAX_CUE_CHARS)")
    ordered = sorted(cues, key=lambda cue: (cue.start, cue.index))
    for previous, cue in zip(ordered, ordered[1:]):
        if cue.start == previous.start:
            raise SubtitleError(cue.line, f"starts at the same time as the cue at line {previous.line} "
                                f"({cue.start:.3f} s): one voice cannot say both there")
    return SubtitleTrack(format="vtt" if is_vtt else "srt", encoding=encoding, cues=tuple(ordered))


# ------------------------------------------------------------------------------------------------ timing


@dataclass(frozen=True)
class CueFit:
    """How one cue's speech is generated: ``target_seconds`` for the model's duration control (None = natural)."""

    target_seconds: float | None
    expected_seconds: float  # what the model is asked to make
    speed_factor: float  # natural / expected: > 1 faster than natural, < 1 slower
    room_seconds: float  # from the cue's start to the next cue's start (inf for the last cue)
    overflow_seconds: float  # expected speech past the cue's end, into the silence before the next cue
    beyond_speed_limit: bool  # squeezed faster than max_speed to stay clear of the next cue


def fit_cue(natural_seconds: float, start: float, end: float, next_start: float | None, *, min_speed: float = 0.8,
            max_speed: float = 1.3, fill: bool = False) -> CueFit:
    """The speech length for a cue whose natural reading lasts ``natural_seconds``.

    - fits the cue: natural length (with ``fill``, slowed down to fill the cue, no slower than ``min_speed``);
    - too long: the cue's length, if that is no faster than ``max_speed``;
    - still too long: ``natural / max_speed``, overflowing into the silence after the cue, but never past the next
      cue's start: there it is squeezed to the room left, beyond the speed limit (reported).
    """
    if not (math.isfinite(natural_seconds) and natural_seconds > 0):
        raise ValueError(f"natural_seconds must be positive, got {natural_seconds!r}")
    room = math.inf if next_start is None else next_start - start
    slot = min(end - start, room)
    if slot <= 0:
        raise ValueError(f"the cue has no time: start {start}, end {end}, next start {next_start}")
    beyond = False
    if natural_seconds <= slot:
        target = min(slot, natural_seconds / min_speed) if fill and natural_seconds < slot else None
    elif natural_seconds / slot <= max_speed:
        target = slot
    else:
        target = natural_seconds / max_speed
        if target > room:
            target, beyond = room, True
    expected = natural_seconds if target is None else target
    return CueFit(target_seconds=target, expected_seconds=expected, speed_factor=natural_seconds / expected,
                  room_seconds=room, overflow_seconds=max(0.0, expected - (end - start)), beyond_speed_limit=beyond)
