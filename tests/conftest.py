"""Shared fixtures. Every test session gets its own BentoML home so the developer's model store is never touched
and each run starts from an empty store."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from hardened import hardened_service  # noqa: E402,F401  (session fixture: one keyed server for several modules)
from openai_served import openai_demo  # noqa: E402,F401  (session fixture: the /v1 server of two modules)


_OWN_BENTOML_HOME: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    # Before anything imports bentoml: its container reads BENTOML_HOME once.
    if "PTBR_TEST_KEEP_BENTOML_HOME" not in os.environ:
        os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="ptbr-test-bentoml-")
        _OWN_BENTOML_HOME.append(os.environ["BENTOML_HOME"])
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub here: fail fast instead of waiting on the network


def pytest_unconfigure(config: pytest.Config) -> None:
    for home in _OWN_BENTOML_HOME:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def demo_service(tmp_path_factory: pytest.TempPathFactory):
    """A served demo model with every setting at its default but its own data directory (``.data_dir``): one
    server for the modules that need nothing special (voices, the web page, the deployment probes). A start costs
    10-30 s on a busy 2-core machine; modules that change a setting start their own."""
    from served import import_demo, start_demo

    data_dir = tmp_path_factory.mktemp("demo-data")
    served = start_demo(import_demo(), tmp_path_factory.mktemp("demo-served") / "serve.log",
                        PTBR_DATA_DIR=str(data_dir))
    served.data_dir = data_dir
    yield served
    served.stop()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shipped_vocab() -> frozenset[str]:
    """The vocabulary f5-tts ships (2545 symbols): the one the base models and the pt-BR fine-tune use."""
    from ptbr_model import f5
    from ptbr_model.text import load_vocab

    return load_vocab(f5.shipped_vocab_path())
