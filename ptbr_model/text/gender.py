"""Grammatical gender of the word that follows a number ("duas casas", "dois carros").

A compact list of common feminine nouns that the endings miss, the masculine exceptions to those
endings, and the endings themselves. Unknown words default to masculine, the generic gender.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class CountedNoun:
    """A noun read after a number (a currency, a unit): its two forms and the gender the number takes."""

    singular: str
    plural: str
    feminine: bool = False

FEMININE_WORDS = frozenset(
    """
    vez vezes mulher mulheres mãe mães noite noites tarde tardes parte partes gente lei leis cor cores
    flor flores dor dores mão mãos rede redes fase fases classe classes chave chaves ponte pontes morte
    mortes sorte sortes mente mentes febre fome sede sedes nuvem nuvens ordem ordens foto fotos moto
    motos tribo tribos voz vozes paz luz luzes cruz cruzes questão questões razão razões região regiões
    religião religiões opinião opiniões arte artes ave aves árvore árvores carne carnes chance chances
    frase frases base bases tese teses série séries espécie espécies superfície superfícies face faces
    pele peles neve torre torres fonte fontes greve greves nave naves dose doses fraude fraudes saúde
    colher colheres vogal vogais catedral catedrais capital capitais libido margem margens ilha lição
    lições lista listas pista pistas revista revistas vista vistas conquista conquistas entrevista
    entrevistas
    """.split()
)
# Feminine loanwords as the pronunciation lexicon respells them ("duas lives" -> "duas laives"): the number
# in front sees the respelling, whose ending does not tell the gender.
FEMININE_LOANWORD_RESPELLINGS = frozenset(
    """
    laive laives sélfi sélfis réchtégui réchtéguis pleilísti pleilístis báique báiques istartâpi istartâpis
    niuzléter niuzléters cóu cóus párti pártis
    """.split()
)

# Words with feminine-looking endings that are masculine (mostly Greek -ma nouns) or generic (-ista).
MASCULINE_WORDS = frozenset(
    """
    dia dias mapa mapas problema problemas sistema sistemas tema temas programa programas planeta
    planetas clima climas idioma idiomas poema poemas esquema esquemas teorema teoremas dilema dilemas
    lema lemas emblema emblemas fonema fonemas cinema cinemas diploma diplomas aroma aromas sintoma
    sintomas genoma genomas drama dramas pijama pijamas panorama panoramas telefonema telefonemas
    diagrama diagramas grama gramas quilograma quilogramas miligrama miligramas telegrama telegramas
    cometa cometas guarda guardas atleta atletas colega colegas pirata piratas idiota idiotas papa papas
    coração corações cão cães pão pães personagem personagens
    """.split()
)

# Short function words: never nouns, so they never make the number before them feminine.
FUNCTION_WORDS = frozenset("a à as às o os e ou de da do das dos em na no nas nos para por com sem".split())

FEMININE_ENDINGS = ("a", "as", "ã", "ãs", "ção", "ções", "são", "sões", "dade", "dades", "gem", "gens",
                    "tude", "tudes", "ise", "ises")  # fmt: skip
# "-ista" nouns name people of either gender ("dois dentistas"): the generic masculine applies.
GENERIC_ENDINGS = ("ista", "istas")

# Words between a number and its noun that do not carry gender themselves.
_TRANSPARENT_WORDS = frozenset({"mil"})
_MAX_WORDS_LOOKED_AT = 3

_NEXT_WORD = re.compile(r" ?([^\W\d_]{1,40})(?![^\W\d_])")
# "2 ou 3 pessoas", "2 a 3 horas": the first number agrees with the noun after the second.
_CONNECTED_NUMBER = re.compile(r" (?:a|e|ou|até) -?\d{1,40}(?:[.,]\d{1,40}){0,8}")


# Women's names that do not end in -a, for "Dona Isabel" and "Isabel segunda".
FEMININE_NAMES = frozenset(
    "Isabel Beatriz Elizabeth Elisabete Carmen Raquel Ester Ruth Inês Mercedes Leonor Abigail Miriam".split()
)


def is_feminine_name(name: str) -> bool:
    """Best guess for a given name: most Portuguese women's names end in -a."""
    return name in FEMININE_NAMES or name.lower().endswith("a")


def is_feminine(word: str) -> bool:
    """Best guess of the grammatical gender of a Portuguese noun or adjective."""
    lowered = word.lower()
    if lowered in FEMININE_WORDS or lowered in FEMININE_LOANWORD_RESPELLINGS:
        return True
    if lowered in MASCULINE_WORDS or lowered in FUNCTION_WORDS or lowered.endswith(GENERIC_ENDINGS):
        return False
    return lowered.endswith(FEMININE_ENDINGS)


def feminine_follows(text: str, position: int) -> bool:
    """True when the noun right after ``position`` (a number's end) is feminine."""
    connected = _CONNECTED_NUMBER.match(text, position)
    if connected:
        position = connected.end()
    for _ in range(_MAX_WORDS_LOOKED_AT):
        match = _NEXT_WORD.match(text, position)
        if match is None:
            return False
        word = match.group(1).lower()
        if word not in _TRANSPARENT_WORDS:
            return is_feminine(word)
        position = match.end()
    return False
