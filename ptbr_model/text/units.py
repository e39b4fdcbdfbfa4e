"""Measurements after a number: "5 km" -> "cinco quilômetros", "1 h" -> "uma hora", "50%" -> "cinquenta por cento".

Singular only for exactly one ("1 km", "1,0 kg"); "1,5 km" is plural as most Brazilians say it.
"""

from __future__ import annotations

import re

from .gender import CountedNoun
from .number_words import is_exactly_one, number_words
from .spacing import spaced


Unit = CountedNoun  # one shape for every counted noun (see money.Currency)

_CELSIUS = Unit("grau Celsius", "graus Celsius")
_LITRE = Unit("litro", "litros")
_MILLILITRE = Unit("mililitro", "mililitros")
_PERCENT = Unit("por cento", "por cento")

UNITS = {
    "km/h": Unit("quilômetro por hora", "quilômetros por hora"),
    "m/s": Unit("metro por segundo", "metros por segundo"),
    "km/l": Unit("quilômetro por litro", "quilômetros por litro"),
    "km²": Unit("quilômetro quadrado", "quilômetros quadrados"),
    "m²": Unit("metro quadrado", "metros quadrados"),
    "cm²": Unit("centímetro quadrado", "centímetros quadrados"),
    "m³": Unit("metro cúbico", "metros cúbicos"),
    "cm³": Unit("centímetro cúbico", "centímetros cúbicos"),
    "km": Unit("quilômetro", "quilômetros"),
    "m": Unit("metro", "metros"),
    "cm": Unit("centímetro", "centímetros"),
    "mm": Unit("milímetro", "milímetros"),
    "kg": Unit("quilo", "quilos"),
    "g": Unit("grama", "gramas"),
    "mg": Unit("miligrama", "miligramas"),
    "l": _LITRE,
    "L": _LITRE,
    "ml": _MILLILITRE,
    "mL": _MILLILITRE,
    "h": Unit("hora", "horas", feminine=True),
    "min": Unit("minuto", "minutos"),
    "s": Unit("segundo", "segundos"),
    "seg": Unit("segundo", "segundos"),
    "ms": Unit("milissegundo", "milissegundos"),
    "ha": Unit("hectare", "hectares"),
    "kcal": Unit("quilocaloria", "quilocalorias", feminine=True),
    "cal": Unit("caloria", "calorias", feminine=True),
    "KB": Unit("quilobyte", "quilobytes"),
    "kB": Unit("quilobyte", "quilobytes"),
    "MB": Unit("megabyte", "megabytes"),
    "GB": Unit("gigabyte", "gigabytes"),
    "TB": Unit("terabyte", "terabytes"),
    "Mbps": Unit("megabit por segundo", "megabits por segundo"),
    "Hz": Unit("hertz", "hertz"),
    "kHz": Unit("quilohertz", "quilohertz"),
    "MHz": Unit("megahertz", "megahertz"),
    "GHz": Unit("gigahertz", "gigahertz"),
    "W": Unit("watt", "watts"),
    "kW": Unit("quilowatt", "quilowatts"),
    "kWh": Unit("quilowatt-hora", "quilowatts-hora"),
    "V": Unit("volt", "volts"),
    "mAh": Unit("miliampere-hora", "miliamperes-hora"),
    "fps": Unit("quadro por segundo", "quadros por segundo"),
    "rpm": Unit("rotação por minuto", "rotações por minuto", feminine=True),
    "bpm": Unit("batimento por minuto", "batimentos por minuto"),
    "dB": Unit("decibel", "decibéis"),
    "cv": Unit("cavalo", "cavalos"),
    "°C": _CELSIUS,
    "ºC": _CELSIUS,
    "℃": _CELSIUS,
    "°F": Unit("grau Fahrenheit", "graus Fahrenheit"),
    "°": Unit("grau", "graus"),
    "%": _PERCENT,
    "‰": Unit("por mil", "por mil"),
}

# A unit symbol right after a number, longest first, not followed by more of a word ("5 mesas").
UNIT_PATTERN = (
    r"(?P<unit>" + "|".join(re.escape(symbol) for symbol in sorted(UNITS, key=len, reverse=True)) + r")(?![^\W_]|/\w)"
)
_MEASUREMENT = re.compile(
    r"(?:(?<![^\s(\[])(?P<sign>-))?(?<![\w.,])(?P<number>\d+(?:[.,]\d+)*) ?" + UNIT_PATTERN
)


def measurement_words(number: str, unit: Unit) -> str:
    amount = number_words(number, feminine=unit.feminine)
    return f"{amount} {unit.singular if is_exactly_one(number) else unit.plural}"


def _read_measurement(match: re.Match[str]) -> str:
    words = measurement_words(match.group("number"), UNITS[match.group("unit")])
    return spaced(match, f"menos {words}" if match.group("sign") else words)


def expand_units(text: str) -> str:
    """Numbers followed by a unit symbol, percent, or degrees."""
    return _MEASUREMENT.sub(_read_measurement, text)
