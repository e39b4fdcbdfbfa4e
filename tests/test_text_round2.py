"""Round 2 of the pt-BR normaliser (issue 15): input -> exactly what the model should read, by category.

Fractions told apart from dates and rates, leading-zero days, phones without an area code, roman numerals after
legal and editorial words, abbreviations whose ordinal indicator gives the gender, thousands separated by a
space or a dot, and numbers glued to units or currency.
"""

import pytest

from ptbr_model.text import normalize

FRACTIONS = [
    # Simple fractions: ordinal denominators up to ten, "avos" above, centésimo and milésimo.
    ("1/4", "um quarto"),
    ("2/5 da turma", "dois quintos da turma"),
    ("5/6", "cinco sextos"),
    ("3/7", "três sétimos"),
    ("7/8 do bolo", "sete oitavos do bolo"),
    ("4/9", "quatro nonos"),
    ("3/10", "três décimos"),
    ("5/13", "cinco treze avos"),
    ("1/15", "um quinze avos"),
    ("3/16 de polegada", "três dezesseis avos de polegada"),
    ("7/20", "sete vinte avos"),
    ("1/100", "um centésimo"),
    ("25/100", "vinte e cinco centésimos"),
    ("1/1000", "um milésimo"),
    ("3/1000", "três milésimos"),
    ("1/2 xícara", "meia xícara"),
    ("1/2 copo", "meio copo"),
    ("1/4 de xícara", "um quarto de xícara"),
    ("2/3 h", "dois terços de hora"),
    # Mixed numbers: the fraction follows the noun, as it is said.
    ("1 1/2 hora", "uma hora e meia"),
    ("1 1/2 horas", "uma hora e meia"),
    ("2 1/2 horas", "duas horas e meia"),
    ("2 1/4 xícaras", "duas xícaras e um quarto"),
    ("3 3/4 xícaras de farinha", "três xícaras e três quartos de farinha"),
    ("1 1/2 litro", "um litro e meio"),
    ("2 1/2 anos", "dois anos e meio"),
    ("1 1/2 kg", "um quilo e meio"),
    ("2 1/2 kg de carne", "dois quilos e meio de carne"),
    ("1 1/2 h", "uma hora e meia"),
    ("3 3/4", "três e três quartos"),
    ("Tenho 2 1/2 e ela 3.", "Tenho dois e meio e ela três."),
    ("1 1/2 de farinha", "um e meio de farinha"),
    ("1½ hora", "uma hora e meia"),
    ("2 ¼ xícaras", "duas xícaras e um quarto"),
    ("¾ do bolo", "três quartos do bolo"),
    # Not fractions: dates, months 11 and 12, reducible ratios, rates.
    ("3/11", "três de novembro"),
    ("15/11", "quinze de novembro"),
    ("1/12/2023", "primeiro de dezembro de dois mil e vinte e três"),
    ("7/9/2022", "sete de setembro de dois mil e vinte e dois"),
    ("12/30", "doze barra trinta"),
    ("10/40", "dez barra quarenta"),
    ("120 km/h", "cento e vinte quilômetros por hora"),
    ("Andou a 10 m/s.", "Andou a dez metros por segundo."),
    ("Fez 15 km/l na estrada.", "Fez quinze quilômetros por litro na estrada."),
]

DAYS = [
    ("01 de setembro", "primeiro de setembro"),
    ("Em 01 de janeiro de 2020.", "Em primeiro de janeiro de dois mil e vinte."),
    ("09 de março de 2020", "nove de março de dois mil e vinte"),
    ("05 de Outubro", "cinco de Outubro"),
    ("dia 01", "dia primeiro"),
    ("No dia 05 houve chuva.", "No dia cinco houve chuva."),
    ("Dia 1 tem festa.", "Dia primeiro tem festa."),
    ("1 de abril", "primeiro de abril"),
    ("31 de dezembro", "trinta e um de dezembro"),
    ("dias 1 e 2 de maio", "dias primeiro e dois de maio"),
    ("de 1 a 5 de junho", "de primeiro a cinco de junho"),
    ("De 01 a 03 de julho", "De primeiro a três de julho"),
    ("1º de maio", "primeiro de maio"),
    ("01/05", "primeiro de maio"),
    ("1 de 10 casos", "um de dez casos"),
    ("Em 3 dias 2 pessoas saíram.", "Em três dias duas pessoas saíram."),
]

PHONES = [
    ("555-1234", "cinco cinco cinco, um dois três quatro"),
    ("Ligue 555-0199.", "Ligue cinco cinco cinco, zero um nove nove."),
    ("1234-5678", "um dois três quatro, cinco seis sete oito"),
    ("Tel. 3456-7890", "Telefone três quatro cinco seis, sete oito nove zero"),
    ("Fone: 8765-4321", "Fone: oito sete seis cinco, quatro três dois um"),
    ("98765-4321", "nove oito sete seis cinco, quatro três dois um"),
    ("Cel. 99876-5432", "Celular nove nove oito sete seis, cinco quatro três dois"),
    ("0123-4567", "zero um dois três, quatro cinco seis sete"),
    ("(21) 555-1234", "vinte e um, cinco cinco cinco, um dois três quatro"),
    # Ranges stay ranges: years, and two round numbers in increasing order.
    ("De 500-1000 pessoas.", "De quinhentas a mil pessoas."),
    ("3500-4000 metros", "três mil e quinhentos a quatro mil metros"),
    ("1990-1995", "mil novecentos e noventa a mil novecentos e noventa e cinco"),
]

ROMAN_NUMERALS = [
    ("artigo V", "artigo quinto"),
    ("Art. IX", "Artigo nono"),
    ("o artigo XII", "o artigo doze"),
    ("artigos I a III", "artigos primeiro a terceiro"),
    ("inciso IV", "inciso quatro"),
    ("art. 5º, inciso XXXV", "artigo quinto, inciso trinta e cinco"),
    ("incisos I e II", "incisos um e dois"),
    ("Inc. III", "Inciso três"),
    ("parágrafo II", "parágrafo segundo"),
    ("capítulo VII", "capítulo sete"),
    ("Título II", "Título dois"),
    ("parte I", "parte um"),
    ("volume XII", "volume doze"),
    ("tomo III", "tomo três"),
    ("ato I, cena II", "ato um, cena dois"),
    ("fase II", "fase dois"),
    ("nível III", "nível três"),
    ("etapa IV", "etapa quatro"),
    ("Henrique VIII", "Henrique oitavo"),
    ("Elizabeth II", "Elizabeth segunda"),
    ("Papa Pio XII", "Papa Pio doze"),
    ("D. João VI", "Dom João sexto"),
    ("Carlos V", "Carlos quinto"),
]

ABBREVIATIONS = [
    ("Profª Ana", "Professora Ana"),
    ("Prof.ª Ana", "Professora Ana"),
    ("Prof.º Rui", "Professor Rui"),
    ("Drª Maria", "Doutora Maria"),
    ("Dr.ª Maria", "Doutora Maria"),
    ("Dra. Maria", "Doutora Maria"),
    ("Engª Carla", "Engenheira Carla"),
    ("Eng.º Paulo", "Engenheiro Paulo"),
    ("Engº Paulo", "Engenheiro Paulo"),
    ("Advª Luísa", "Advogada Luísa"),
    ("Arq.ª Lia", "Arquiteta Lia"),
    ("Dª Maria", "Dona Maria"),
    ("Sr.ª Costa", "Senhora Costa"),
    ("Exmº Sr. Juiz", "Excelentíssimo Senhor Juiz"),
    ("Ilmª Sra. Diretora", "Ilustríssima Senhora Diretora"),
    ("Sra. Costa", "Senhora Costa"),
    ("Srta. Lima", "Senhorita Lima"),
    ("S. Exa. o Presidente", "Sua Excelência o Presidente"),
    ("V. Exa. pediu", "Vossa Excelência pediu"),
    ("V. Exª pediu", "Vossa Excelência pediu"),
    ("V. Sª", "Vossa Senhoria"),
    ("N. Sra. Aparecida", "Nossa Senhora Aparecida"),
    ("cód. 123", "código cento e vinte e três"),
    ("fl. 10", "folha dez"),
    ("fls. 10 a 12", "folhas dez a doze"),
    ("apt. 101", "apartamento cento e um"),
    ("ap. 42", "apartamento quarenta e dois"),
    ("Atte., João", "Atenciosamente, João"),
    ("tel. 1234", "telefone mil duzentos e trinta e quatro"),
    ("Cel. Souza chegou.", "Coronel Souza chegou."),
    ("pág. 10", "página dez"),
    ("págs. 10 a 20", "páginas dez a vinte"),
    ("nº 5", "número cinco"),
    ("Nº 12", "Número doze"),
    ("§ 2º", "parágrafo segundo"),
    ("§§ 1º e 2º", "parágrafos primeiro e segundo"),
    ("Ex.: casa", "Exemplo: casa"),
    ("qtd. 5", "quantidade cinco"),
    ("Café c/ leite e s/ açúcar", "Café com leite e sem açúcar"),
    ("Um presente p/ você.", "Um presente para você."),
]

THOUSANDS = [
    ("1 000 000", "um milhão"),
    ("10 000 habitantes", "dez mil habitantes"),
    ("1 500 reais", "mil e quinhentos reais"),
    ("R$ 1 500,00", "mil e quinhentos reais"),
    ("100 000 km", "cem mil quilômetros"),
    ("12 345 678", "doze milhões trezentos e quarenta e cinco mil seiscentos e setenta e oito"),
    ("2\u00a0000 pessoas", "duas mil pessoas"),
    ("3\u202f500 metros", "três mil e quinhentos metros"),
    ("1.000 pessoas", "mil pessoas"),
    ("10.000", "dez mil"),
    ("250.000 casas", "duzentas e cinquenta mil casas"),
    ("1.000.000,50", "um milhão vírgula cinquenta"),
    ("3456 7890", "três mil quatrocentos e cinquenta e seis sete mil oitocentos e noventa"),
    ("Ligue 0800 123 4567", "Ligue zero oito zero zero, um dois três, quatro cinco seis sete"),
]

GLUED = [
    ("10kg", "dez quilos"),
    ("5km", "cinco quilômetros"),
    ("1kg", "um quilo"),
    ("3,5kg", "três vírgula cinco quilos"),
    ("1,80m", "um vírgula oitenta metros"),
    ("20cm", "vinte centímetros"),
    ("500ml", "quinhentos mililitros"),
    ("100km/h", "cem quilômetros por hora"),
    ("37,5ºC", "trinta e sete vírgula cinco graus Celsius"),
    ("20°C", "vinte graus Celsius"),
    ("15%", "quinze por cento"),
    ("8GB de RAM", "oito gigabytes de ram"),
    ("60Hz", "sessenta hertz"),
    ("30fps", "trinta quadros por segundo"),
    ("5000mAh", "cinco mil miliamperes-hora"),
    ("150cv", "cento e cinquenta cavalos"),
    ("R$10", "dez reais"),
    ("R$0,99", "noventa e nove centavos"),
    ("R$1.000,00", "mil reais"),
    ("US$5", "cinco dólares"),
    ("10€", "dez euros"),
    ("10reais", "dez reais"),
    ("R$10mil", "dez mil reais"),
    ("R$ 5mi", "cinco milhões de reais"),
    ("US$10bi", "dez bilhões de dólares"),
    ("50mil", "cinquenta mil"),
    ("5anos", "cinco anos"),
]

CASES = FRACTIONS + DAYS + PHONES + ROMAN_NUMERALS + ABBREVIATIONS + THOUSANDS + GLUED


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[text for text, _ in CASES])
def test_round_two_reads_text_as_a_brazilian_would(text: str, expected: str) -> None:
    assert normalize(text) == expected


def test_round_two_has_at_least_120_distinct_cases() -> None:
    assert len(CASES) >= 120
    assert len({text for text, _ in CASES}) == len(CASES), "duplicate inputs in the table"


@pytest.mark.parametrize("text", [text for text, _ in CASES])
def test_round_two_results_are_fixed_points(text: str) -> None:
    once = normalize(text)
    assert normalize(once) == once


def _readme_examples() -> list[tuple[str, str]]:
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Pronunciation") :]
    section = section[: section.index("\n### ")]
    rows = []
    for line in section.splitlines():
        if line.startswith("| `"):
            written, spoken = (cell.strip() for cell in line.strip("|").split(" | "))
            rows.append((written.strip("`"), spoken))
    return rows


README_EXAMPLES = _readme_examples()


@pytest.mark.parametrize(("text", "spoken"), README_EXAMPLES, ids=[text for text, _ in README_EXAMPLES])
def test_the_readme_table_shows_what_the_service_reads(text: str, spoken: str) -> None:
    from ptbr_model.text import Lexicon

    # The service reads with the built-in lexicon; "…" in the table stands for the start of the sentence.
    result = normalize(text, lexicon=Lexicon.builtin())
    assert result.endswith(spoken.removeprefix("… ")) if spoken.startswith("…") else result == spoken


def test_the_readme_table_has_examples_of_round_two() -> None:
    assert len(README_EXAMPLES) >= 14
