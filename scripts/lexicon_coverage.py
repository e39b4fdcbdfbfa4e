#!/usr/bin/env python3
"""How much of the English that Brazilian text really contains does the pronunciation lexicon cover? Prints JSON.

Corpus: wordfreq's Portuguese word list (``wordfreq==3.1.1``, requirements-test.txt), most frequent first. It is
built from subtitles, web text, Wikipedia, news and social media; wordfreq has one list for Portuguese, so it mixes
Brazil and Portugal, with Brazil the larger part of the web sources.

A word of that list counts as "non-Portuguese" when all of these hold:
- it is a word: letters only (hyphens and apostrophes inside allowed), at least one vowel (so "sp", "km", "cm",
  abbreviations the normaliser reads, are out), and not a roman numeral ("iii", "xvi");
- it is not in a Brazilian Portuguese word list: by default Debian's ``wbrazilian`` (``/usr/share/dict/brazilian``,
  about 275,000 inflected forms from the br.ispell project; ``apt-get install wbrazilian``), else ``--portuguese-words``;
- it is at home in English: wordfreq's English frequency is at least a tenth of its Portuguese one
  (``zipf_en >= zipf_pt - 1``), which keeps out Portuguese names, slang and typos that the dictionary lacks
  ("paulo", "lula", "vc"), and at least its frequency in Spanish, French, Italian, German and Dutch, which keeps
  out words of those languages ("san", "le", "juan", "des"). The lexicon is for English and English-named brands;
  a word used 10x more in Brazil than in English ("whatsapp") does not count, covered or not.

The first ``--top`` (1000) such words are the test set. A word is covered when the lexicon respells it (plurals and
hyphenated parts as the lexicon matches them). Reported: covered / total, the same weighted by the word's frequency
in Portuguese (the share of English word occurrences in running text that the lexicon reads right), the most frequent
uncovered words (what to add next), and lexicon words that are also Portuguese words (to review: "shopping" and
"software" are in the dictionary and in the lexicon on purpose).

    python scripts/lexicon_coverage.py [--top 1000] [--lexicon-file extra.tsv] [--portuguese-words FILE]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ptbr_model.text import Lexicon, load_lexicon  # noqa: E402
from ptbr_model.text.roman import roman_value  # noqa: E402

DEFAULT_PORTUGUESE_WORDS = Path("/usr/share/dict/brazilian")
# Words looked at in wordfreq's Portuguese list before giving up on finding --top non-Portuguese ones.
MAX_SCANNED = 200_000
# "At home in English": English frequency at least 10^-1 of the Portuguese one (Zipf is log10 per billion words),
# and at least the frequency in each of these languages.
MAX_ZIPF_DEFICIT = 1.0
OTHER_LANGUAGES = ("es", "fr", "it", "de", "nl")
_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")
_VOWEL = re.compile(r"[aeiouyáéíóúâêôãõàü]")


def read_portuguese_words(path: Path) -> frozenset[str]:
    if not path.exists():
        sys.exit(f"no Portuguese word list at {path}: apt-get install wbrazilian, or pass --portuguese-words FILE")
    with path.open(encoding="utf-8") as words:
        return frozenset(line.strip().lower() for line in words if line.strip())


def is_candidate(word: str) -> bool:
    if _WORD.fullmatch(word) is None or len(word) < 2 or _VOWEL.search(word) is None:
        return False
    return roman_value(word.upper()) is None


def non_portuguese_words(top: int, portuguese: frozenset[str]) -> list[tuple[str, float, float]]:
    import wordfreq

    found: list[tuple[str, float, float]] = []
    for word in wordfreq.top_n_list("pt", MAX_SCANNED):
        if not is_candidate(word) or word in portuguese:
            continue
        zipf_pt = wordfreq.zipf_frequency(word, "pt")
        zipf_en = wordfreq.zipf_frequency(word, "en")
        if zipf_en < zipf_pt - MAX_ZIPF_DEFICIT:
            continue
        if all(zipf_en >= wordfreq.zipf_frequency(word, language) for language in OTHER_LANGUAGES):
            found.append((word, zipf_pt, zipf_en))
            if len(found) == top:
                break
    return found


def measure(lexicon: Lexicon, words: list[tuple[str, float, float]], portuguese: frozenset[str]) -> dict:
    covered = [word for word, _, _ in words if lexicon.respell(word) is not None]
    weight = {word: 10**zipf_pt for word, zipf_pt, _ in words}
    total_weight = sum(weight.values())
    uncovered = [word for word, _, _ in words if lexicon.respell(word) is None]
    entries = lexicon.entries
    collisions = sorted(word for word in entries if word in portuguese)
    plural_collisions = sorted(
        word + "s" for word in entries
        if word + "s" in portuguese and word + "s" not in entries and lexicon.respell(word + "s") is not None
    )
    return {
        "corpus": "wordfreq 3.1.1 'pt' (top_n_list, most frequent first)",
        "portuguese_word_list_size": len(portuguese),
        "lexicon_entries": len(lexicon),
        "non_portuguese_words": len(words),
        "covered": len(covered),
        "coverage": round(len(covered) / len(words), 4) if words else 0.0,
        "coverage_by_frequency": round(sum(weight[word] for word in covered) / total_weight, 4) if words else 0.0,
        "top_100_covered": sum(1 for word, _, _ in words[:100] if lexicon.respell(word) is not None),
        "last_rank_zipf_pt": round(words[-1][1], 2) if words else None,
        "most_frequent_uncovered": uncovered[:60],
        "lexicon_words_that_are_portuguese_words": collisions,
        "lexicon_plurals_that_are_portuguese_words": plural_collisions,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--top", type=int, default=1000, help="how many non-Portuguese words to test (1000)")
    parser.add_argument("--lexicon-file", type=Path, help="a user lexicon merged over the built-in one")
    parser.add_argument("--portuguese-words", type=Path, default=DEFAULT_PORTUGUESE_WORDS,
                        help=f"one Portuguese word a line (default {DEFAULT_PORTUGUESE_WORDS}, Debian's wbrazilian)")
    args = parser.parse_args()
    portuguese = read_portuguese_words(args.portuguese_words)
    lexicon = load_lexicon(args.lexicon_file)
    words = non_portuguese_words(args.top, portuguese)
    print(json.dumps(measure(lexicon, words, portuguese), ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
