"""Brazilian-Portuguese text front-end: normaliser, vocabulary coverage, chunking.

Pure Python (num2words + unicodedata); importing it loads neither torch nor f5-tts.
"""

from .chunking import chunk_budget_bytes, chunk_text
from .normalizer import normalize
from .prepare import PreparedText, prepare_text
from .vocab import fit_to_vocab, load_vocab, vocab_indices

__all__ = [
    "PreparedText",
    "chunk_budget_bytes",
    "chunk_text",
    "fit_to_vocab",
    "load_vocab",
    "normalize",
    "prepare_text",
    "vocab_indices",
]
