"""Abbreviations with a dot ("Sr.", "Av.", "séc.", "etc."), with an ordinal indicator marking the gender
("Profª", "Prof.ª", "Eng.º", "Drª"), "nº", "§§", slash shorthands ("c/", "s/", "p/") and a few chat
shorthands ("vc").

Expansions keep the capital of a title-case abbreviation ("Dr." -> "Doutor", "av." -> "avenida").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .gender import is_feminine_name
from .spacing import spaced


@dataclass(frozen=True)
class Abbreviation:
    expansion: str
    # The abbreviation's dot may also end the sentence ("... e frutas etc. Depois ..."): keep a full stop.
    may_end_sentence: bool = False


_SENTENCE_FINAL = frozenset(
    {"etc.", "ltda.", "cia.", "S.A.", "S/A", "jr.", "a.C.", "d.C.", "hab.", "atte.", "att.", "abs."}
)

# Written forms, matched ignoring case; a space in the form is optional in the text.
ABBREVIATIONS = {
    written: Abbreviation(expansion, written in _SENTENCE_FINAL)
    for written, expansion in {
        "sr.": "senhor", "sra.": "senhora", "srta.": "senhorita", "srs.": "senhores", "sras.": "senhoras",
        "dr.": "doutor", "dra.": "doutora", "drs.": "doutores", "dras.": "doutoras",
        "prof.": "professor", "profa.": "professora", "profs.": "professores", "profas.": "professoras",
        "exmo.": "excelentíssimo", "exma.": "excelentíssima", "ilmo.": "ilustríssimo", "ilma.": "ilustríssima",
        "v. sa.": "Vossa Senhoria", "v. exa.": "Vossa Excelência", "s. exa.": "Sua Excelência",
        "s. sa.": "Sua Senhoria", "v. exª": "Vossa Excelência", "v. ex.ª": "Vossa Excelência",
        "s. exª": "Sua Excelência", "s. ex.ª": "Sua Excelência", "v. sª": "Vossa Senhoria",
        "v. s.ª": "Vossa Senhoria", "n. sra.": "Nossa Senhora", "n. srª": "Nossa Senhora",
        "n. sr.ª": "Nossa Senhora", "pe.": "padre", "jr.": "júnior",
        "eng.": "engenheiro", "enga.": "engenheira", "adv.": "advogado", "gov.": "governador",
        "dep.": "deputado", "sen.": "senador", "pres.": "presidente", "gen.": "general", "ten.": "tenente",
        "sgt.": "sargento", "sto.": "santo", "sta.": "santa",
        "av.": "avenida", "pça.": "praça", "pç.": "praça", "rod.": "rodovia", "trav.": "travessa",
        "estr.": "estrada", "apto.": "apartamento", "ap.": "apartamento",
        "depto.": "departamento", "cia.": "companhia", "ltda.": "limitada",
        "tel.": "telefone", "cel.": "celular", "obs.": "observação", "aprox.": "aproximadamente",
        "cód.": "código", "fl.": "folha", "fls.": "folhas", "apt.": "apartamento", "atte.": "atenciosamente",
        "att.": "atenciosamente", "abs.": "abraços", "inc.": "inciso", "al.": "alameda", "ex.": "exemplo",
        "qtd.": "quantidade", "qtde.": "quantidade", "ref.": "referência", "doc.": "documento",
        "proc.": "processo", "dept.": "departamento", "cx.": "caixa", "unid.": "unidade", "dz.": "dúzia",
        "máx.": "máximo", "mín.": "mínimo", "pág.": "página", "págs.": "páginas", "pg.": "página",
        "pp.": "páginas", "vol.": "volume", "vols.": "volumes", "cap.": "capítulo", "caps.": "capítulos",
        "art.": "artigo", "arts.": "artigos", "fig.": "figura", "tab.": "tabela",
        "ed.": "edição", "hab.": "habitantes", "núm.": "número",
        "etc.": "et cetera", "p. ex.": "por exemplo", "i.e.": "isto é", "e.g.": "por exemplo",
        "séc.": "século", "sécs.": "séculos",
        "vs.": "versus", "nº": "número", "n.º": "número", "n°": "número", "nºs": "números",
    }.items()
}  # fmt: skip

# Written forms whose case matters: "A.C." are someone's initials, "a.C." is "antes de Cristo".
CASE_SENSITIVE_ABBREVIATIONS = {
    written: Abbreviation(expansion, written in _SENTENCE_FINAL)
    for written, expansion in {
        "a.C.": "antes de Cristo", "d.C.": "depois de Cristo", "S.A.": "esse á", "S/A": "esse á",
    }.items()
}  # fmt: skip
_BY_KEY = {written.replace(" ", ""): abbreviation for written, abbreviation in ABBREVIATIONS.items()}

# Abbreviations whose ordinal indicator gives the gender: "Profª" and "Prof.ª" -> "Professora", "Eng.º" ->
# "Engenheiro". (masculine, feminine); "°" is accepted for "º", as it is often typed.
GENDER_MARKED = {
    "prof": ("professor", "professora"), "dr": ("doutor", "doutora"), "eng": ("engenheiro", "engenheira"),
    "adv": ("advogado", "advogada"), "sr": ("senhor", "senhora"), "d": ("Dom", "Dona"),
    "exm": ("excelentíssimo", "excelentíssima"), "ilm": ("ilustríssimo", "ilustríssima"),
    "arq": ("arquiteto", "arquiteta"), "psic": ("psicólogo", "psicóloga"), "méd": ("médico", "médica"),
    "ex": ("excelência", "excelência"), "s": ("senhoria", "senhoria"),
}  # fmt: skip
# Titles that mean something else before a name: "Cel. Souza" is a colonel, "cel. 9999-0000" a mobile.
TITLES_BEFORE_A_NAME = {"cel.": "coronel"}

# "c/ açúcar", "s/ juros", "p/ você": a lower-case letter, a slash and a space before a word.
SLASH_SHORTHANDS = {"c": "com", "s": "sem", "p": "para"}

CHAT_SHORTHANDS = {"vc": "você", "vcs": "vocês", "tb": "também", "tbm": "também", "pq": "porque"}

# Single capital letters that abbreviate a title only before a name: "D. Pedro", "R. Augusta", "S. Paulo".
SINGLE_LETTER_TITLES = {"D": ("Dom", "Dona"), "R": ("Rua", "Rua"), "S": ("São", "Santa")}
# A capital letter after these words is the letter itself: "vitamina D. Depois ...".
_LETTER_NOUNS = frozenset("letra vitamina classe tipo grupo série bloco plano nota item opção alternativa".split())


def _alternation(forms: dict[str, Abbreviation] | list[str]) -> str:
    """Longest forms first; after a final dot anything may follow ("Sr.Silva"), otherwise a non-letter."""
    escaped = (re.escape(written).replace(r"\ ", " ?") for written in sorted(forms, key=len, reverse=True))
    return r"(?<![^\W\d_])(?:" + "|".join(escaped) + r")(?:(?<=\.)|(?![^\W\d_]))"


# One-word forms ("sr.") are found by shape and looked up, which is much faster than a long
# alternation tried at every position; the few forms with inner dots or spaces get their own pattern.
_ONE_WORD_FORM = re.compile(r"(?<![^\W\d_])[^\W\d_]{1,6}\.")
_MULTI_PART_FORMS = [written for written in ABBREVIATIONS if not re.fullmatch(r"[^\W\d_]{1,6}\.", written)]
_MULTI_PART_ABBREVIATION = re.compile(_alternation(_MULTI_PART_FORMS), re.IGNORECASE)
_CASE_SENSITIVE_ABBREVIATION = re.compile(_alternation(CASE_SENSITIVE_ABBREVIATIONS))
_NUMBER_SIGN = re.compile(r"(?<![\w#])#(?=\d)")
_PAGE = re.compile(r"(?<![^\W\d_])p\. ?(?=\d)")
# Streets are also named by dates: "R. 25 de Março".
_SINGLE_LETTER_TITLE = re.compile(
    r"(?<![^\W\d_.])(?P<letter>[DRS])\. (?=(?P<name>[A-ZÀ-Ý][a-zà-ÿ]{1,40})|[DRS]\. |(?<=R\. )\d)"
)
_GENDER_MARKED = re.compile(r"(?<![^\W\d_])(?P<stem>[^\W\d_ªº]{1,5})\.?(?P<mark>[ºª°])(?![^\W\d_])")
_SLASH_SHORTHAND = re.compile(r"(?<![^\W\d_/])(?P<letter>[csp])/ (?=[^\W\d_])")
_NAME_FOLLOWS = re.compile(r" [A-ZÀ-Ý][a-zà-ÿ]{1,40}")
_CHAT_SHORTHAND = re.compile(r"(?<![^\W\d_])(?:" + "|".join(CHAT_SHORTHANDS) + r")(?![^\W\d_])")
_LOOK_BACK_CHARS = 48
_PREVIOUS_WORD = re.compile(r"([^\W\d_]{1,40}) $")
_SENTENCE_CONTINUES_WITH_CAPITAL = re.compile(r" [A-ZÀ-Ý]")


def _match_case(written: str, expansion: str) -> str:
    # "Dr." -> "Doutor", but "DR." (shouted) and "S.A." (all capitals) stay lower-case.
    if written[0].isupper() and any(char.islower() for char in written):
        return expansion[0].upper() + expansion[1:]
    return expansion


def _expand(match: re.Match[str], abbreviation: Abbreviation) -> str:
    words = _match_case(match.group(0), abbreviation.expansion)
    if abbreviation.may_end_sentence:
        text, end = match.string, match.end()
        if end == len(text) or _SENTENCE_CONTINUES_WITH_CAPITAL.match(text, end):
            words += "."
    return spaced(match, words)


def _read_abbreviation(match: re.Match[str]) -> str:
    key = match.group(0).lower().replace(" ", "")
    title = TITLES_BEFORE_A_NAME.get(key)
    if title is not None and _NAME_FOLLOWS.match(match.string, match.end()):
        return spaced(match, _match_case(match.group(0), title))
    abbreviation = _BY_KEY.get(key)
    return match.group(0) if abbreviation is None else _expand(match, abbreviation)


def _read_gender_marked(match: re.Match[str]) -> str:
    forms = GENDER_MARKED.get(match.group("stem").lower())
    if forms is None:
        return match.group(0)
    words = forms[1] if match.group("mark") == "ª" else forms[0]
    return spaced(match, _match_case(match.group(0), words))


def _read_case_sensitive_abbreviation(match: re.Match[str]) -> str:
    return _expand(match, CASE_SENSITIVE_ABBREVIATIONS[match.group(0)])


def _read_single_letter_title(match: re.Match[str]) -> str:
    start = match.start()
    before = _PREVIOUS_WORD.search(match.string[max(0, start - _LOOK_BACK_CHARS) : start])
    if before and before.group(1).lower() in _LETTER_NOUNS:
        return match.group(0)
    masculine, feminine = SINGLE_LETTER_TITLES[match.group("letter")]
    name = match.group("name")
    return (feminine if name and is_feminine_name(name) else masculine) + " "


def expand_abbreviations(text: str) -> str:
    """Expand titles, address words, Latin abbreviations, 'nº', '#5' and chat shorthands."""
    if "#" in text:
        text = _NUMBER_SIGN.sub("número ", text)
    # Every written form has a dot, a slash or an ordinal sign: most text skips these scans.
    if "." in text or "/" in text or "º" in text or "°" in text or "ª" in text:
        text = _PAGE.sub("página ", text)
        text = _CASE_SENSITIVE_ABBREVIATION.sub(_read_case_sensitive_abbreviation, text)
        text = _MULTI_PART_ABBREVIATION.sub(_read_abbreviation, text)
        if "º" in text or "ª" in text or "°" in text:
            text = _GENDER_MARKED.sub(_read_gender_marked, text)
        text = _ONE_WORD_FORM.sub(_read_abbreviation, text)
        text = _SINGLE_LETTER_TITLE.sub(_read_single_letter_title, text)
        if "/ " in text:
            text = _SLASH_SHORTHAND.sub(lambda match: SLASH_SHORTHANDS[match.group("letter")] + " ", text)
    return _CHAT_SHORTHAND.sub(lambda match: CHAT_SHORTHANDS[match.group(0)], text)
