"""The pronunciation lexicon: the shipped data, matching rules, user files, per-request entries, validation."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from ptbr_model.settings import Settings
from ptbr_model.text import Lexicon, fit_to_vocab, load_lexicon, normalize, prepare_text, validate_pronunciations
from ptbr_model.text.abbreviations import (
    ABBREVIATIONS,
    CHAT_SHORTHANDS,
    GENDER_MARKED,
    SINGLE_LETTER_TITLES,
    SLASH_SHORTHANDS,
)
from ptbr_model.text.acronyms import ACRONYMS_READ_AS_WORDS, ACRONYMS_SPELLED
from ptbr_model.text.lexicon import NO_PLURAL, WORD_PATTERN, check_word, parse_tsv
from ptbr_model.text.units import UNITS

BUILTIN = Lexicon.builtin()


def _builtin_entries():
    text = resources.files("ptbr_model.text").joinpath("data", "loanwords.tsv").read_text(encoding="utf-8")
    return parse_tsv(text.splitlines(), "loanwords.tsv")


# --- the shipped data -----------------------------------------------------------------------------------------


def test_the_builtin_lexicon_has_at_least_300_entries() -> None:
    assert len(BUILTIN) >= 300


def test_every_builtin_word_is_one_lower_case_word() -> None:
    for word in _builtin_entries():
        assert check_word(word) is None, word
        assert word == word.lower(), word


def test_every_respelling_uses_only_characters_of_the_shipped_vocab(shipped_vocab: frozenset[str]) -> None:
    for word, entry in _builtin_entries().items():
        forms = [entry.respelling] + ([entry.plural] if entry.plural not in (None, NO_PLURAL) else [])
        for form in forms:
            missing = sorted({char for char in form if char not in shipped_vocab})
            assert not missing, f"{word!r} -> {form!r} uses {missing}"


def test_capitalised_respellings_fit_the_vocab_without_losing_a_character(shipped_vocab: frozenset[str]) -> None:
    # "Ô" is not in the vocab: fit_to_vocab turns it into "ô"; nothing may be removed.
    for word in _builtin_entries():
        spoken = BUILTIN.apply(word.capitalize())
        fitted, removed = fit_to_vocab(spoken, shipped_vocab)
        assert removed == [], (word, spoken, removed)
        assert fitted.lower() == spoken.lower()


def test_no_respelling_is_respelled_again() -> None:
    # Otherwise the result would depend on how often the lexicon runs (normalize is a fixed point).
    for word, entry in _builtin_entries().items():
        assert BUILTIN.apply(entry.respelling) == entry.respelling, word
        for spoken_word in WORD_PATTERN.findall(entry.respelling):
            assert BUILTIN.respell(spoken_word) is None, (word, spoken_word)


def test_builtin_words_leave_the_normalisers_own_forms_alone() -> None:
    # Unit symbols, abbreviations, chat shorthands and acronyms are read by the normaliser; the one overlap, "ok",
    # reads the same both ways.
    normaliser_forms = {symbol.lower() for symbol in UNITS} | {written.rstrip(".").lower() for written in ABBREVIATIONS}
    normaliser_forms |= set(CHAT_SHORTHANDS) | {acronym.lower() for acronym in ACRONYMS_SPELLED}
    normaliser_forms |= set(GENDER_MARKED) | {letter.lower() for letter in SINGLE_LETTER_TITLES} | set(SLASH_SHORTHANDS)
    normaliser_forms |= {"us", "r", "u"}  # before "$": "US$ 5"
    assert not normaliser_forms & set(_builtin_entries())
    for acronym, reading in ACRONYMS_READ_AS_WORDS.items():
        if acronym.lower() in BUILTIN:
            assert BUILTIN.respell(acronym) == reading


@pytest.mark.parametrize(
    "word",
    # Portuguese words (or their common informal spellings) that look English: never entries.
    ["time", "case", "come", "for", "to", "so", "me", "no", "do", "are", "imagine", "dance", "visa", "vale", "go",
     "a", "e", "tutorial", "digital", "real", "super", "total", "mega", "pane", "sale", "more", "data"],
)
def test_portuguese_words_are_not_entries(word: str) -> None:
    assert BUILTIN.respell(word) is None
    assert normalize(word, lexicon=BUILTIN) == normalize(word)


def test_the_builtin_lexicon_is_read_once_and_not_at_import() -> None:
    script = (
        "from ptbr_model.text import lexicon\n"
        "assert lexicon._builtin_lexicon.cache_info().currsize == 0, 'read at import'\n"
        "first = lexicon.Lexicon.builtin()\n"
        "assert lexicon.Lexicon.builtin() is first\n"
        "assert lexicon._builtin_lexicon.cache_info().misses == 1\n"
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr


# --- matching ---------------------------------------------------------------------------------------------------

MATCHING = [
    # The examples.
    ("YouTube", "Iutúbi"),
    ("WhatsApp", "Uótsap"),
    ("download", "daunlôud"),
    ("show", "xou"),
    ("Wi-Fi", "Uai-fai"),
    ("site", "saite"),
    ("e-mail", "imêiu"),
    ("iPhone", "aifône"),
    ("live", "laive"),
    ("feedback", "fídbéque"),
    # Case: any case matches; a capital first letter is kept; a word in capitals is read in lower case.
    ("youtube", "iutúbi"),
    ("YOUTUBE", "iutúbi"),
    ("Show de bola!", "Xou de bola!"),
    ("SHOW DE BOLA", "xou DE BOLA"),  # the all-caps reader lowers the rest
    ("wi-fi e WI-FI", "uai-fai e uai-fai"),
    # Plurals.
    ("os sites", "os saites"),
    ("dois shows", "dois xous"),
    ("três downloads", "três daunlôuds"),
    ("vários e-mails", "vários imêius"),
    ("os iPhones", "os aifônes"),
    ("Amazon e Amazonas", "Émazon e Amazonas"),
    ("o Windows", "o Uíndous"),
    ("as fake news", "as fêique niúz"),
    # Punctuation around the word.
    ('"show", (site); [live]!', '"xou", (saite); [laive]!'),
    ("'show' e «live»", "'xou' e «laive»"),
    ("show... site? live: blog.", "xou... saite? laive: blógui."),
    ("— show —", "— xou —"),
    # Never inside other words.
    ("showzaço", "showzaço"),
    ("sitezinho", "sitezinho"),
    ("megashow", "megashow"),
    ("downloadear", "downloadear"),
    ("website", "uébsaite"),  # its own entry, not "site" inside it
    ("show_off", "show_off"),
    # Hyphens: a hyphenated entry first, else entries among the parts.
    ("pré-show", "pré-xou"),
    ("YouTube-Brasil", "Iutúbi-Brasil"),
    ("guarda-chuva", "guarda-chuva"),
    ("check-in e check-out", "tchéqui-ín e tchéqui-áuti"),
    # Apostrophes belong to the word.
    ("McDonald's", "Mequidônaldis"),
    ("McDonald’s", "Mequidônaldis"),
    # Addresses are the address reader's.
    ("youtube.com", "youtube.com"),
    ("joao@gmail.com", "joao@gmail.com"),
    ("www.site.com.br/show", "www.site.com.br/show"),
    # Portuguese text is untouched.
    ("Ação, coração e não.", "Ação, coração e não."),
]


@pytest.mark.parametrize(("text", "expected"), MATCHING, ids=[text for text, _ in MATCHING])
def test_lexicon_matching(text: str, expected: str) -> None:
    assert BUILTIN.apply(text) == expected


NORMALIZED = [
    ("Vi no YouTube e mandei no WhatsApp.", "Vi no Iutúbi e mandei no Uótsap."),
    ("Fiz 2 downloads às 14h30.", "Fiz dois daunlôuds às catorze horas e trinta minutos."),
    ("Tem Wi-Fi? Manda um e-mail.", "Tem Uai-fai? Manda um imêiu."),
    # Words inside addresses are respelled once the address reader has split them.
    ("joao@gmail.com", "joao arroba djimêiu ponto com"),
    ("Acesse www.youtube.com hoje.", "Acesse dáblio dáblio dáblio ponto iutúbi ponto com hoje."),
    ("#youtube", "réchtégui iutúbi"),
    ("Tudo OK.", "Tudo okei."),
    ("O DJ tocou no show.", "O didjêi tocou no xou."),
    ("O SHOW COMEÇOU", "O xou começou"),
    ("D. Pedro II assistiu ao show.", "Dom Pedro segundo assistiu ao xou."),
    ("US$ 5 no show", "cinco dólares no xou"),
    # Numbers agree with the loanword's gender in Portuguese.
    ("Fiz 2 lives e 2 shows.", "Fiz duas laives e dois xous."),
    ("Tirei 22 selfies.", "Tirei vinte e duas sélfis."),
    ("A Profª Ana e o Art. 5º.", "A Professora Ana e o Artigo quinto."),
]


@pytest.mark.parametrize(("text", "expected"), NORMALIZED, ids=[text for text, _ in NORMALIZED])
def test_normalize_applies_the_lexicon_first(text: str, expected: str) -> None:
    assert normalize(text, lexicon=BUILTIN) == expected


def test_the_lexicon_changes_no_portuguese_reading_of_the_normaliser_tables() -> None:
    # Every case of both tables reads the same with the lexicon on, except where an English word is respelled.
    import test_text_normalize
    import test_text_round2

    changed = {
        text: normalize(text, lexicon=BUILTIN)
        for text, expected in test_text_normalize.CASES + test_text_round2.CASES
        if normalize(text, lexicon=BUILTIN) != expected
    }
    assert changed == {
        "O McDonald's e o iPhone.": "O Mequidônaldis e o aifône.",
        "Tom & Jerry": "Tom e Djéri",
        "#amor": "réchtégui amor",
        "joao.silva@gmail.com": "joao ponto silva arroba djimêiu ponto com",
        "Contato: joao.silva@gmail.com.": "Contato: joao ponto silva arroba djimêiu ponto com.",
    }


def test_without_a_lexicon_normalize_leaves_english_words_as_written() -> None:
    assert normalize("Vi no YouTube o show.") == "Vi no YouTube o show."


# --- user files and per-request entries -------------------------------------------------------------------------


@pytest.fixture()
def user_tsv(tmp_path: Path) -> Path:
    path = tmp_path / "lexicon.tsv"
    path.write_text(
        "# my words\n"
        "Nubank\tnubanque\n"
        "show\tchou\n"
        "ok\tok\n"
        "Jorginho\tjorjínho\t-\n"
        "\n"
        "Zé-Lelé\tzé lelé\n",
        encoding="utf-8",
    )
    return path


def test_a_user_tsv_file_is_merged_over_the_builtin_lexicon(user_tsv: Path) -> None:
    lexicon = load_lexicon(user_tsv)
    assert normalize("Abri o Nubank no show.", lexicon=lexicon) == "Abri o Nubanque no chou."
    # Entries the file does not mention stay built-in; "ok": "ok" switches the built-in one off.
    assert normalize("Vi no YouTube, OK?", lexicon=lexicon) == "Vi no Iutúbi, okei?"
    assert lexicon.respell("ok") == "ok"
    assert normalize("Os Jorginhos e o Zé-Lelé.", lexicon=lexicon) == "Os Jorginhos e o Zé lelé."
    assert load_lexicon(user_tsv) is lexicon, "a file is read once per modification"


def test_a_user_json_file_is_merged_over_the_builtin_lexicon(tmp_path: Path) -> None:
    path = tmp_path / "lexicon.json"
    path.write_text(json.dumps({"Nubank": "nubanque", "download": "baixada"}), encoding="utf-8")
    lexicon = load_lexicon(path)
    assert normalize("O download do Nubank.", lexicon=lexicon) == "O baixada do Nubanque."


def test_per_request_entries_override_file_and_builtin(user_tsv: Path) -> None:
    lexicon = load_lexicon(user_tsv).merged({"SHOW": "xôu", "Wi-Fi": "uífi"})
    assert normalize("O show tem Wi-Fi e Nubank.", lexicon=lexicon) == "O xôu tem Uífi e Nubanque."
    # Merging makes a new lexicon: the file's and the built-in ones are unchanged.
    assert load_lexicon(user_tsv).respell("show") == "chou"
    assert BUILTIN.respell("show") == "xou"


def test_a_lexicon_file_is_checked_against_the_vocab_when_given(tmp_path: Path, shipped_vocab: frozenset[str]) -> None:
    path = tmp_path / "lexicon.tsv"
    path.write_text("Nubank\tnubânqui\n", encoding="utf-8")
    assert load_lexicon(path, shipped_vocab).respell("nubank") == "nubânqui"
    bad = tmp_path / "bad.tsv"  # another file: the cache is keyed on path and modification time
    bad.write_text("Nubank\tnu☃bank\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.tsv: 'nubank': the respelling has characters .* lacks: '☃'"):
        load_lexicon(bad, shipped_vocab)


def test_no_lexicon_file_means_the_builtin_one() -> None:
    assert load_lexicon(None) is BUILTIN
    assert load_lexicon("") is BUILTIN


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("show\n", r"lexicon.tsv:1: expected 'word<TAB>respelling"),
        ("# ok\nshow\txou\nduas palavras\tx\n", r"lexicon.tsv:3: the word 'duas palavras' must be one word"),
        ("ok\tokei\n123\tx\n", r"lexicon.tsv:2: the word '123' must contain a letter"),
        ("show\t\n", r"lexicon.tsv:1: expected"),
    ],
)
def test_a_bad_lexicon_file_names_the_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "lexicon.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        Lexicon.from_file(path)


def test_a_bad_json_lexicon_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "lexicon.json"
    path.write_text('["show"]', encoding="utf-8")
    with pytest.raises(ValueError, match="expected a JSON object"):
        Lexicon.from_file(path)
    path.write_text('{"show": 3}', encoding="utf-8")
    with pytest.raises(ValueError, match="respelling of 'show' must be a non-empty string"):
        Lexicon.from_file(path)


def test_the_lexicon_file_setting_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, user_tsv: Path) -> None:
    assert Settings().lexicon_file is None
    monkeypatch.setenv("PTBR_LEXICON_FILE", str(user_tsv))
    assert Settings().lexicon_file == user_tsv


# --- validation of user entries -----------------------------------------------------------------------------------


def test_valid_pronunciations_pass(shipped_vocab: frozenset[str]) -> None:
    validate_pronunciations({"Nubank": "nubânqui", "Wi-Fi": "uífi", "ok": "ok", "5G": "cinco gê"}, shipped_vocab,
                           max_entries=4, max_chars=20, lexicon=BUILTIN)


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({f"w{index}": "x" for index in range(5)}, "5 entries is over the 4-entry limit"),
        ({"duas palavras": "x"}, "'duas palavras': the word must be one word"),
        ({"": "x"}, "'': the word is empty"),
        ({"123": "x"}, "'123': the word must contain a letter"),
        ({"show": "  "}, "'show': the respelling is empty"),
        ({"show": "x" * 21}, "'show': the respelling is over the 20-character limit"),
        ({"a" * 21: "x"}, "the word is over the 20-character limit"),
        ({"show": "xou☃|"}, "'show': the respelling has characters the model's vocabulary lacks: '|', '☃'"),
        ({"show": "xou\n"}, None),  # surrounding whitespace is stripped: valid
        ({"show": "xou\tmais"}, "vocabulary lacks: '\\\\t'"),
        ({"nubank": "nu site"}, "'nubank': the respelling contains 'site', which the lexicon respells as 'saite'"),
        ({"abc": "def", "def": "abc"}, "the respelling contains 'def'"),
        ({"show": 3}, "words and respellings must be strings"),
    ],
)
def test_invalid_pronunciations_are_refused_naming_the_word(
    shipped_vocab: frozenset[str], entries: dict, message: str | None
) -> None:
    if message is None:
        validate_pronunciations(entries, shipped_vocab, max_entries=4, max_chars=20, lexicon=BUILTIN)
        return
    with pytest.raises(ValueError, match=message):
        validate_pronunciations(entries, shipped_vocab, max_entries=4, max_chars=20, lexicon=BUILTIN)


def test_pronunciations_must_be_a_mapping(shipped_vocab: frozenset[str]) -> None:
    with pytest.raises(ValueError, match="must be an object"):
        validate_pronunciations([("show", "xou")], shipped_vocab)  # type: ignore[arg-type]


# --- through prepare_text -------------------------------------------------------------------------------------------

REFERENCE = {"ref_text": "Eu vi o show no YouTube.", "ref_audio_seconds": 4.0, "speed": 1.0}


def test_prepare_text_reads_text_and_reference_with_the_lexicon(shipped_vocab: frozenset[str]) -> None:
    lexicon = BUILTIN.merged({"Nubank": "nubânqui"})
    prepared = prepare_text("Baixe o app do Nubank no Wi-Fi.", shipped_vocab, lexicon=lexicon, **REFERENCE)
    assert prepared.text == "Baixe o ép do Nubânqui no Uai-fai."
    assert prepared.removed == ()
    # The budget comes from the reference as the model reads it: respelled with the same lexicon.
    plain = prepare_text("Baixe o app do Nubank no Wi-Fi.", shipped_vocab, **REFERENCE)
    assert plain.text == "Baixe o app do Nubank no Wi-Fi."


def test_the_lexicon_is_part_of_normalisation(shipped_vocab: frozenset[str]) -> None:
    prepared = prepare_text("O show.", shipped_vocab, lexicon=BUILTIN, normalize_text=False, **REFERENCE)
    assert prepared.text == "O show."


def test_the_bento_packs_the_lexicon_data(repo_root: Path) -> None:
    import pathspec
    import yaml

    include = yaml.safe_load((repo_root / "bentofile.yaml").read_text())["include"]
    spec = pathspec.PathSpec.from_lines("gitwildmatch", include)
    data_files = sorted(path.relative_to(repo_root).as_posix() for path in (repo_root / "ptbr_model").rglob("data/*"))
    assert data_files and all(spec.match_file(path) for path in data_files), data_files


def test_the_coverage_script_prints_its_measure_as_json(repo_root: Path, tmp_path: Path) -> None:
    # A tiny Portuguese word list stands in for Debian's wbrazilian: the measure's shape, not its value, is tested.
    words = tmp_path / "portuguese.txt"
    words.write_text("\n".join(["de", "que", "não", "para", "com", "uma", "os", "no", "se", "na"]), encoding="utf-8")
    completed = subprocess.run(
        [sys.executable, str(repo_root / "scripts" / "lexicon_coverage.py"), "--top", "40", "--portuguese-words",
         str(words)], capture_output=True, text=True, timeout=120, check=False,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)
    assert report["non_portuguese_words"] == 40
    assert 0 < report["covered"] <= 40
    assert report["coverage"] == round(report["covered"] / 40, 4)
    assert report["lexicon_entries"] == len(BUILTIN)
    assert "site" not in report["most_frequent_uncovered"]
