"""Settings come from PTBR_* variables and validate their ranges."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ptbr_model.settings import Settings, resolve_nfe_step


def test_defaults_match_the_documented_ones(monkeypatch):
    for name in ("PTBR_NFE_STEP", "PTBR_SPEED_PRESET", "PTBR_MAX_TEXT_CHARS"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert resolve_nfe_step(settings, None, None) == 16
    assert (settings.cfg_strength, settings.sway_sampling_coef, settings.cross_fade_duration) == (2.0, -1.0, 0.15)
    assert settings.max_text_chars == 2000
    assert settings.dtype == "auto" and settings.device == "auto"


def test_environment_overrides_and_precedence(monkeypatch):
    monkeypatch.setenv("PTBR_SPEED_PRESET", "fast")
    settings = Settings()
    assert resolve_nfe_step(settings, None, None) == 7
    monkeypatch.setenv("PTBR_NFE_STEP", "20")
    settings = Settings()
    assert resolve_nfe_step(settings, None, None) == 20
    assert resolve_nfe_step(settings, None, "quality") == 32
    assert resolve_nfe_step(settings, 3, "quality") == 3


@pytest.mark.parametrize("name,value", [("PTBR_NFE_STEP", "0"), ("PTBR_NFE_STEP", "65"), ("PTBR_DTYPE", "int8"),
                                        ("PTBR_MAX_UPLOAD_BYTES", "10"), ("PTBR_SPEED_PRESET", "turbo")])
def test_out_of_range_settings_are_refused(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()
