#!/usr/bin/env python
"""Import an F5-TTS checkpoint (any released layout) into the BentoML model store.

    python scripts/import_model.py CHECKPOINT [--vocab FILE] [--vocoder DIR|hub] [--preset NAME]
                                   [--store-dtype float16|float32] [--name NAME]
    python scripts/import_model.py --demo

Prints the model tag on stdout. On failure: exit status 1 and one line on stderr (``--verbose`` adds the traceback).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ptbr_model.checkpoint import PRESETS, DEFAULT_PRESET, CheckpointError, progress_to_stderr  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", nargs="?", help=".safetensors/.pt/.ckpt file, or hf://owner/repo/path")
    parser.add_argument("--demo", action="store_true", help="import the tiny random demo model instead")
    parser.add_argument("--vocab", type=Path, help="vocab.txt the model was trained with (default: f5-tts's own)")
    parser.add_argument("--vocoder", default="hub", help="vocos-mel-24khz folder, or 'hub' to download it (default)")
    parser.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS), help="behaviour preset")
    parser.add_argument("--store-dtype", default="float16", choices=("float16", "float32"))
    parser.add_argument("--name", default=None, help="model store name (default: f5tts-ptbr)")
    parser.add_argument("--verbose", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)
    if args.demo == bool(args.checkpoint):
        parser.error("give either a CHECKPOINT or --demo")
    return args


def run(args: argparse.Namespace) -> str:
    from ptbr_model import f5, store
    from ptbr_model.demo import write_demo_files

    name = args.name or store.MODEL_NAME
    vocab = args.vocab or f5.shipped_vocab_path()
    if args.demo:
        with tempfile.TemporaryDirectory(prefix="ptbr-demo-") as workdir:
            checkpoint, vocoder_dir = write_demo_files(Path(workdir), vocab)
            options = store.ImportOptions(checkpoint, "demo", vocab, vocoder_dir, DEFAULT_PRESET, args.store_dtype, name, demo=True)
            return store.import_checkpoint(options, progress_to_stderr)

    if args.checkpoint.startswith("hf://"):
        checkpoint = store.download_checkpoint_from_hub(args.checkpoint)
    else:
        checkpoint = Path(args.checkpoint).expanduser()
    vocoder_dir = store.download_vocos_from_hub() if args.vocoder == "hub" else Path(args.vocoder).expanduser()
    options = store.ImportOptions(
        checkpoint, Path(args.checkpoint).name, vocab, vocoder_dir, args.preset, args.store_dtype, name
    )
    return store.import_checkpoint(options, progress_to_stderr)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        print(run(args))
    except CheckpointError as exc:
        if args.verbose:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # anything unforeseen still ends in one line, with the traceback on request
        if args.verbose:
            raise
        print(f"error: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
