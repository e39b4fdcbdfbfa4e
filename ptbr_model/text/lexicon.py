"""Pronunciation lexicon: English loanwords and brands respelled the way Brazilians say them.

"YouTube" -> "Iutúbi", "download" -> "daunlôud", "Wi-Fi" -> "Uai-fai". A pt-BR model reads an English
spelling letter by letter in Portuguese; a respelling in Portuguese spelling makes it say the word.

Matching rules (README, "Pronunciation"):
- whole words only, case-insensitive: "show" is respelled, "showroom" is not (it needs its own entry), and
  "site" inside "website" is left alone; hyphens and apostrophes belong to the word ("Wi-Fi", "McDonald's");
- a hyphenated word that is not an entry is looked up part by part ("YouTube-Brasil");
- the plural "word + s" is "respelling + s" unless the entry says otherwise (data file, third column);
- words inside e-mail and web addresses are left to the address reader ("youtube.com", "a@gmail.com");
- the case of the first letter is kept ("YouTube" -> "Iutúbi"); a word in capitals ("SHOW") is read as a
  word, in lower case, as the all-caps reader does.

The built-in entries are data (``data/loanwords.tsv``), read once per process on first use. Users add or
override entries with a file (``PTBR_LEXICON_FILE``: TSV like the built-in one, or a JSON object) and per
request; later entries win, and an entry mapping a word to itself switches an earlier one off. A respelling
must not contain a word the lexicon would respell again (``validate_pronunciations``), so applying it twice
changes nothing. A set intersection first tells whether any word of the text is an entry; only then does one
regex visit the words, each answered by a dict lookup: applying the lexicon is linear in the text.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType

BUILTIN_FILE = "loanwords.tsv"
# Third TSV column meaning "the s-form is not this word's plural".
NO_PLURAL = "-"

# A lexicon word: letters and digits, joined by single hyphens or apostrophes ("wi-fi", "mcdonald's", "5g").
_WORD = r"[^\W_]+(?:['’-][^\W_]+)*"
WORD_PATTERN = re.compile(_WORD)
# Candidates in running text. Not right after characters that glue a word to an address or a path.
_CANDIDATE = re.compile(r"(?<![\w@./\\:])" + _WORD)
# After a word, these mean it is part of an address ("youtube.com", "gmail@", "show_off").
_ADDRESS_AFTER = re.compile(r"[@_]|[./:\\][^\W_]")
_HAS_LETTER = re.compile(r"[^\W\d_]")


def normalize_key(word: str) -> str:
    """The form entries are stored and looked up under: NFC, lower case, straight apostrophe."""
    return unicodedata.normalize("NFC", word).strip().lower().replace("’", "'")


@dataclass(frozen=True)
class Entry:
    respelling: str
    # None: the regular plural (respelling + "s"); NO_PLURAL: no plural; else the plural's respelling.
    plural: str | None = None


def _entry_from_value(value: str | Entry) -> Entry:
    return value if isinstance(value, Entry) else Entry(unicodedata.normalize("NFC", value).strip())


class Lexicon:
    """An immutable word -> respelling table with its matching rules. Build with ``builtin()``,
    ``from_file()`` or ``from_entries()``; combine with ``merged()``; use with ``apply()``."""

    __slots__ = ("_entries", "_lookup")

    def __init__(self, entries: Mapping[str, str | Entry] | None = None) -> None:
        table = {normalize_key(word): _entry_from_value(value) for word, value in (entries or {}).items()}
        self._entries: Mapping[str, Entry] = MappingProxyType(table)
        self._lookup = self._build_lookup(table)

    @staticmethod
    def _build_lookup(table: Mapping[str, Entry]) -> dict[str, str]:
        lookup: dict[str, str] = {}
        for word, entry in table.items():
            if entry.plural == NO_PLURAL:
                continue
            plural = word + "s"
            if plural not in table:  # an explicit entry for the s-form wins
                lookup[plural] = entry.plural or entry.respelling + "s"
        # Singular entries last: a word that is an entry is never read as another entry's plural.
        lookup.update((word, entry.respelling) for word, entry in table.items())
        return lookup

    # --- construction -------------------------------------------------------------------------------------

    @classmethod
    def builtin(cls) -> Lexicon:
        """The shipped loanword lexicon, read once per process."""
        return _builtin_lexicon()

    @classmethod
    def from_entries(cls, entries: Mapping[str, str]) -> Lexicon:
        return cls(entries)

    @classmethod
    def from_file(cls, path: str | Path) -> Lexicon:
        """A TSV file like the built-in one (``word<TAB>respelling[<TAB>plural]``, ``#`` comments), or a
        ``.json`` file holding one object ``{"word": "respelling"}``. Raises ValueError naming the line."""
        path = Path(path)
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            return cls(_parse_json(text, str(path)))
        return cls(parse_tsv(text.splitlines(), str(path)))

    def merged(self, entries: Mapping[str, str] | Lexicon) -> Lexicon:
        """A new lexicon: these entries over this one's (same word, any case: the new one wins)."""
        if not entries:
            return self
        table: dict[str, str | Entry] = dict(self._entries)
        other = entries._entries if isinstance(entries, Lexicon) else entries
        table.update((normalize_key(word), value) for word, value in other.items())
        return Lexicon(table)

    # --- use ----------------------------------------------------------------------------------------------

    @property
    def entries(self) -> Mapping[str, str]:
        """word -> respelling (read-only view, words in lower case)."""
        return MappingProxyType({word: entry.respelling for word, entry in self._entries.items()})

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, word: object) -> bool:
        return isinstance(word, str) and normalize_key(word) in self._entries

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Lexicon) and self._entries == other._entries

    __hash__ = None  # type: ignore[assignment]  # mutable-looking: compare, do not hash

    def __repr__(self) -> str:
        return f"Lexicon({len(self)} entries)"

    def respell(self, word: str) -> str | None:
        """The respelling of one word (no case adjustment), or None if the lexicon does not know it."""
        key = normalize_key(word)
        found = self._lookup.get(key)
        if found is not None or "-" not in key:
            return found
        # "youtube-brasil": respell the parts that are entries, keep the others.
        parts = key.split("-")
        spoken = [self._lookup.get(part) for part in parts]
        if not any(spoken):
            return None
        original = word.split("-")
        return "-".join(_with_case(original[i], said) if said else original[i] for i, said in enumerate(spoken))

    def apply(self, text: str) -> str:
        """Replace every lexicon word in ``text`` by its respelling."""
        if not self._entries or not text:
            return text
        text = unicodedata.normalize("NFC", text)
        return _CANDIDATE.sub(self._replace, text) if self._may_match(text) else text

    def _may_match(self, text: str) -> bool:
        """Whether any word of ``text`` (or part of a hyphenated one) is a lexicon word. Set operations in C:
        most text, and the normaliser's own output in its later rounds, has none, and then no word is visited."""
        words = set(WORD_PATTERN.findall(text.lower().replace("’", "'")))
        if not words.isdisjoint(self._lookup):
            return True
        return any(not self._lookup.keys().isdisjoint(word.split("-")) for word in words if "-" in word)

    def _replace(self, match: re.Match[str]) -> str:
        word = match.group(0)
        # Hot path (every word of the text): one dict lookup; the rest only for entries and compound words.
        spoken = self._lookup.get(word.lower())
        if spoken is None:
            if "-" not in word and "’" not in word:
                return word
            spoken = self.respell(word)
        if spoken is None or _ADDRESS_AFTER.match(match.string, match.end()):
            return word
        # "word": "word" switches an entry off: the word stays as written, for the normaliser to read.
        if normalize_key(spoken) == normalize_key(word):
            return word
        return _with_case(word, spoken)


def _with_case(word: str, spoken: str) -> str:
    """Keep a capital first letter; a word in capitals ("SHOW") is read in lower case."""
    if not word[:1].isupper() or not spoken:
        return spoken
    letters = [char for char in word if char.isalpha()]
    if len(letters) > 1 and all(char.isupper() for char in letters):
        return spoken
    return spoken[0].upper() + spoken[1:]


# --- files -------------------------------------------------------------------------------------------------


def check_word(word: str) -> str | None:
    """Why ``word`` cannot be a lexicon word, or None if it can."""
    key = normalize_key(word)
    if not key:
        return "is empty"
    if WORD_PATTERN.fullmatch(key) is None:
        return "must be one word: letters or digits, joined by single hyphens or apostrophes"
    if _HAS_LETTER.search(key) is None:
        return "must contain a letter"
    return None


def parse_tsv(lines: Iterable[str], source: str) -> dict[str, Entry]:
    entries: dict[str, Entry] = {}
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = [field.strip() for field in raw.rstrip("\r\n").split("\t")]
        if len(fields) not in (2, 3) or not fields[1]:
            raise ValueError(f"{source}:{number}: expected 'word<TAB>respelling[<TAB>plural]', got {raw!r}")
        problem = check_word(fields[0])
        if problem:
            raise ValueError(f"{source}:{number}: the word {fields[0]!r} {problem}")
        plural = fields[2] if len(fields) == 3 and fields[2] else None
        entries[normalize_key(fields[0])] = Entry(unicodedata.normalize("NFC", fields[1]), plural)
    return entries


def _parse_json(text: str, source: str) -> dict[str, str]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a JSON object of word -> respelling")
    for word, respelling in data.items():
        problem = check_word(word)
        if problem:
            raise ValueError(f"{source}: the word {word!r} {problem}")
        if not isinstance(respelling, str) or not respelling.strip():
            raise ValueError(f"{source}: the respelling of {word!r} must be a non-empty string")
    return data


@lru_cache(maxsize=1)
def _builtin_lexicon() -> Lexicon:
    text = resources.files(__package__).joinpath("data", BUILTIN_FILE).read_text(encoding="utf-8")
    return Lexicon(parse_tsv(text.splitlines(), BUILTIN_FILE))


@lru_cache(maxsize=8)
def _read_lexicon_file(path: str, modified_ns: int) -> Lexicon:
    return Lexicon.from_file(path)


@lru_cache(maxsize=8)
def _merged_with_builtin(path: str, modified_ns: int) -> Lexicon:
    return Lexicon.builtin().merged(_read_lexicon_file(path, modified_ns))


# Longest word or respelling accepted in a lexicon file (request entries have their own, smaller limit).
MAX_FILE_ENTRY_CHARS = 200


def load_lexicon(lexicon_file: str | Path | None = None, vocab: frozenset[str] | None = None) -> Lexicon:
    """The built-in lexicon, with the user's file (``PTBR_LEXICON_FILE``) merged over it when given.

    Cached per file and modification time, so a service reads the file once. With ``vocab`` (the model's), the
    file's respellings are checked like request entries (``validate_pronunciations``). Raises ValueError naming
    the file, and the line or word, on a bad file; OSError if it cannot be read.
    """
    if lexicon_file is None or str(lexicon_file) == "":
        return Lexicon.builtin()
    path = Path(lexicon_file)
    key = (str(path.resolve()), path.stat().st_mtime_ns)
    if vocab is not None:
        entries = _read_lexicon_file(*key).entries
        try:
            validate_pronunciations(entries, vocab, max_entries=max(len(entries), 1),
                                    max_chars=MAX_FILE_ENTRY_CHARS, lexicon=Lexicon.builtin())
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
    return _merged_with_builtin(*key)


# --- request entries -----------------------------------------------------------------------------------------

# Defaults for the per-request limits; the service reads its own from settings.
DEFAULT_MAX_PRONUNCIATIONS = 100
DEFAULT_MAX_PRONUNCIATION_CHARS = 64


def _quoted(chars: Iterable[str]) -> str:
    return ", ".join(repr(char) for char in sorted(set(chars)))


def validate_pronunciations(
    entries: Mapping[str, str],
    vocab: frozenset[str],
    *,
    max_entries: int = DEFAULT_MAX_PRONUNCIATIONS,
    max_chars: int = DEFAULT_MAX_PRONUNCIATION_CHARS,
    lexicon: Lexicon | None = None,
) -> None:
    """Check user entries (a request's ``pronunciations``, or a lexicon file's entries) before use.

    Raises ValueError naming the first bad word and what is wrong: too many entries, a word that is not one
    word, a word or respelling over ``max_chars``, characters of a respelling that the model's vocabulary
    lacks, or a respelling that contains a word the lexicon would respell again (``lexicon``: the one these
    entries are merged into; the entries themselves are always checked).
    """
    if not isinstance(entries, Mapping):
        raise ValueError("must be an object mapping words to respellings")
    if len(entries) > max_entries:
        raise ValueError(f"{len(entries)} entries is over the {max_entries}-entry limit")
    for word, respelling in entries.items():
        if not isinstance(word, str) or not isinstance(respelling, str):
            raise ValueError(f"{word!r}: words and respellings must be strings")
        if len(word) > max_chars:
            raise ValueError(f"{word[:max_chars]!r}...: the word is over the {max_chars}-character limit")
        problem = check_word(word)
        if problem:
            raise ValueError(f"{word!r}: the word {problem}")
        said = unicodedata.normalize("NFC", respelling).strip()
        if not said:
            raise ValueError(f"{word!r}: the respelling is empty")
        if len(said) > max_chars:
            raise ValueError(f"{word!r}: the respelling is over the {max_chars}-character limit")
        missing = [char for char in said if char not in vocab]
        if missing:
            raise ValueError(f"{word!r}: the respelling has characters the model's vocabulary lacks: {_quoted(missing)}")
    # A respelling the lexicon would respell again makes the result depend on how often it is applied.
    merged = (lexicon or Lexicon()).merged(entries)
    for word, respelling in entries.items():
        if normalize_key(respelling) == normalize_key(word):
            continue  # "word": "word" switches a built-in entry off
        for spoken_word in WORD_PATTERN.findall(respelling):
            again = merged.respell(spoken_word)
            if again is not None and normalize_key(again) != normalize_key(spoken_word):
                raise ValueError(
                    f"{word!r}: the respelling contains {spoken_word!r}, which the lexicon respells as {again!r}; "
                    "write that part as it is said"
                )
