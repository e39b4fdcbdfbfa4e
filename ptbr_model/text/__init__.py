"""Brazilian-Portuguese text front-end: normaliser, pronunciation lexicon, vocabulary coverage, chunking.

Pure Python (num2words + unicodedata); importing it loads neither torch nor f5-tts.
"""

from .chunking import chunk_budget_bytes, chunk_text
from .lexicon import Lexicon, load_lexicon, validate_pronunciations
from .normalizer import normalize
from .prepare import PreparedText, prepare_text
from .vocab import fit_to_vocab, load_vocab, vocab_indices

__all__ = [
    "Lexicon",
    "PreparedText",
    "chunk_budget_bytes",
    "chunk_text",
    "fit_to_vocab",
    "load_lexicon",
    "load_vocab",
    "normalize",
    "prepare_text",
    "validate_pronunciations",
    "vocab_indices",
]
