"""SRT/WebVTT parsing (strict, errors name the line), encodings, cue text, and how a cue's speech fits its slot."""

from __future__ import annotations

import io
import math

import pytest

from ptbr_model.subtitles import SubtitleError, cue_text, decode_subtitles, fit_cue, parse_subtitles

SRT = """1
00:00:01,000 --> 00:00:02,500
Olá, <i>mundo</i>!
Segunda linha.

2
00:00:03,000 --> 00:00:04,250 X1:40 X2:600
{\\an8}Tudo bem &amp; você?

3
01:02:03,004 --> 01:02:05,000
Último.
"""

VTT = """WEBVTT - título
Kind: captions

NOTE isto é um comentário
que ocupa duas linhas

STYLE
::cue { color: yellow }

intro
00:01.000 --> 00:02.500 align:start position:10%
Olá, <b>mundo</b>!
Segunda linha.

00:00:03.000 --> 00:00:04.250
<v Ana>Tudo bem &amp; você?</v>

01:02:03.004 --> 01:02:05.000
Último.
"""


def test_srt_cues_times_lines_and_text():
    track = parse_subtitles(SRT.encode())
    assert (track.format, track.encoding) == ("srt", "utf-8")
    assert [(c.index, c.line, c.start, c.end) for c in track.cues] == [
        (1, 2, 1.0, 2.5), (2, 7, 3.0, 4.25), (3, 11, 3723.004, 3725.0)]
    assert [c.text for c in track.cues] == ["Olá, mundo! Segunda linha.", "Tudo bem & você?", "Último."]


def test_vtt_cues_match_srt_and_skip_notes_and_styles():
    track = parse_subtitles(VTT.encode())
    assert track.format == "vtt"
    srt = parse_subtitles(SRT.encode())
    assert [(c.start, c.end, c.text) for c in track.cues] == [(c.start, c.end, c.text) for c in srt.cues]
    assert [c.line for c in track.cues] == [11, 15, 18]


def test_vtt_agrees_with_webvtt_py_on_a_valid_file():
    import webvtt  # test-only: a cross-check against the library (subtitles.py says why it is not used at run time)

    ours = parse_subtitles(VTT.encode()).cues
    theirs = list(webvtt.from_buffer(io.StringIO(VTT)))
    assert len(ours) == len(theirs)
    for cue, caption in zip(ours, theirs):
        assert (cue.start, cue.end) == (pytest.approx(_seconds(caption.start)), pytest.approx(_seconds(caption.end)))
        assert cue.text == cue_text(caption.raw_text)


def _seconds(stamp: str) -> float:
    hours, minutes, rest = stamp.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(rest)


def test_latin1_is_detected_and_a_bom_is_dropped():
    latin = SRT.encode("cp1252")
    track = parse_subtitles(latin)
    assert track.encoding == "latin-1" and track.cues[0].text.startswith("Olá")
    assert parse_subtitles(b"\xef\xbb\xbf" + VTT.encode()).format == "vtt"
    assert decode_subtitles("ação\r\nfim".encode("latin-1")) == ("ação\nfim", "latin-1")
    assert decode_subtitles(b"a\x81b")[1] == "latin-1"  # undefined in cp1252: ISO 8859-1 then


@pytest.mark.parametrize("text,line,fragment", [
    ("1\n00:00:01,000 --> 00:00:02,000\nok\n\n2\n00:00:03,000 -> 00:00:04,000\nbad arrow\n", 6, "timing"),
    ("1\n00:00:01,000 --> 00:00:02,000\nok\n\n2\n00:00:03.5 --> 00:00:04,000\nshort millis\n", 6, "timing"),
    ("1\n00:00:01,000 --> 00:00:02,000\nok\n\nsolto\n", 5, "expected a cue"),
    ("1\n00:00:05,000 --> 00:00:02,000\nbackwards\n", 2, "before it starts"),
    ("1\n00:00:01,000 --> 00:00:02,000\na\n\n2\n00:00:01,000 --> 00:00:03,000\nb\n", 6, "same time"),
    ("1\n00:00:01,000 --> 00:00:02,000\n" + "a" * 600 + "\n", 2, "600 characters"),
    ("1\nnão é tempo\n00:00:01,000 --> 00:00:02,000\nx\n", 2, "after the cue number"),
    ("WEBVTT\n\n00:01.000 --> 00:02.000\nok\n\n00:03.000 -> 00:04.000\nbad\n", 6, "timing"),
    ("WEBVTT\n\n00:01.000 --> 00:02.000\nok\n\n00:03.0x0 --> 00:04.000\nbad\n", 6, "timing"),
    ("WEBVTT\n\n00:01.000 --> 00:02.000\nok\n00:03.000 --> 00:04.000\nglued\n", 5, "blank line"),
    ("WEBVTT\n\nid only\n", 4, "timing line"),
    ("WEBVTT\n\n00:01.000 --> 00:02.000\nok\n\nSTYLE\n::cue {}\n", 6, "before the first cue"),
    ("WEBVT\n\n00:01.000 --> 00:02.000\nok\n", 1, "WEBVTT"),
    ("a\x00b", 1, "NUL"),
])
def test_malformed_files_name_the_line(text, line, fragment):
    with pytest.raises(SubtitleError) as caught:
        parse_subtitles(text.encode("utf-8"), filename="x.vtt" if text.startswith("WEBVT") else "x.srt")
    assert caught.value.line == line, str(caught.value)
    assert fragment in str(caught.value) and str(caught.value).startswith(f"line {line}:")


def test_limits_on_cues_and_track_length():
    many = "".join(f"{n}\n00:00:{n:02d},000 --> 00:00:{n:02d},500\nfala {n}\n\n" for n in range(1, 6))
    with pytest.raises(SubtitleError, match="over the 3-cue limit"):
        parse_subtitles(many.encode(), max_cues=3)
    with pytest.raises(SubtitleError, match="track limit"):
        parse_subtitles(many.encode(), max_seconds=4.0)
    with pytest.raises(SubtitleError, match="no cues"):
        parse_subtitles(b"\n\n")


def test_cues_are_ordered_by_start_and_keep_their_file_index():
    text = "1\n00:00:05,000 --> 00:00:06,000\nsegunda\n\n2\n00:00:01,000 --> 00:00:02,000\nprimeira\n"
    cues = parse_subtitles(text.encode()).cues
    assert [(c.index, c.text) for c in cues] == [(2, "primeira"), (1, "segunda")]


# ------------------------------------------------------------------------------------------------ fit_cue

@pytest.mark.parametrize("natural,start,end,next_start,fill,target,factor,overflow,beyond", [
    (1.0, 0.0, 2.0, 3.0, False, None, 1.0, 0.0, False),      # fits: natural length
    (1.0, 0.0, 2.0, 3.0, True, 1.25, 0.8, 0.0, False),       # fill: slowed to 0.8x
    (1.9, 0.0, 2.0, 3.0, True, 2.0, 0.95, 0.0, False),       # fill stops at the cue's end
    (2.5, 0.0, 2.0, 3.0, False, 2.0, 1.25, 0.0, False),      # 1.25x: squeezed into the cue
    (3.0, 0.0, 2.0, 4.0, False, 3.0 / 1.3, 1.3, 3.0 / 1.3 - 2.0, False),  # max speed, overflow into the gap
    (3.0, 0.0, 2.0, 2.1, False, 2.1, 3.0 / 2.1, 0.1, True),  # would hit the next cue: beyond the limit
    (3.0, 0.0, 2.0, None, False, 3.0 / 1.3, 1.3, 3.0 / 1.3 - 2.0, False),  # last cue: overflow freely
    (1.5, 0.0, 2.0, 1.0, False, 1.0, 1.5, 0.0, True),        # overlapping cues: the next start is the limit
])
def test_fit_cue(natural, start, end, next_start, fill, target, factor, overflow, beyond):
    fit = fit_cue(natural, start, end, next_start, min_speed=0.8, max_speed=1.3, fill=fill)
    assert (fit.target_seconds is None) == (target is None)
    if target is not None:
        assert fit.target_seconds == pytest.approx(target)
    assert fit.speed_factor == pytest.approx(factor)
    assert fit.overflow_seconds == pytest.approx(overflow)
    assert fit.beyond_speed_limit is beyond
    assert start + fit.expected_seconds <= (next_start if next_start is not None else math.inf) + 1e-9


def test_fit_cue_rejects_impossible_input():
    with pytest.raises(ValueError):
        fit_cue(0.0, 0.0, 1.0, None)
    with pytest.raises(ValueError):
        fit_cue(1.0, 2.0, 1.0, None)
