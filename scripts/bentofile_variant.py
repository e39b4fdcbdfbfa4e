#!/usr/bin/env python
"""Write a variant of bentofile.yaml for machines that cannot reach the cu126 torch index.

    python scripts/bentofile_variant.py --torch-index pypi OUT.yaml [--bentofile bentofile.yaml]

`pypi` leaves out python.extra_index_url, so torch comes from PyPI (its default CUDA build, without Pascal
kernels); everything else is the real bentofile's. `cu126` copies the bentofile as it is. Build with
`bentoml build -f OUT.yaml <repo>` (paths in the bentofile stay relative to the build context, the repo).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent


def variant(config: dict, torch_index: str) -> dict:
    config = yaml.safe_load(yaml.safe_dump(config))  # a deep copy
    if torch_index == "pypi":
        config.get("python", {}).pop("extra_index_url", None)
    return config


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--torch-index", choices=("cu126", "pypi"), required=True)
    parser.add_argument("--bentofile", type=Path, default=REPO_ROOT / "bentofile.yaml")
    args = parser.parse_args(argv)
    config = yaml.safe_load(args.bentofile.read_text())
    args.out.write_text(yaml.safe_dump(variant(config, args.torch_index), sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
