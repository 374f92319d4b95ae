"""Text corpora for profiling: the bundled sample or any UTF-8 text file, as token streams."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from moeopt import files
from moeopt.errors import InputError

DEFAULT_CORPUS = "python-reference-topics"


@dataclass(frozen=True)
class Corpus:
    """A tokenised corpus: one token stream in document order, and where it came from."""

    name: str
    token_ids: np.ndarray  # (tokens,) int64, no special tokens

    def head(self, tokens: int) -> Corpus:
        return Corpus(f"{self.name}[:{tokens}]", self.token_ids[:tokens])


def read_text(path: str | None = None) -> tuple[str, str]:
    """(name, text) of the bundled sample (``path`` None) or of a UTF-8 text file."""
    if path is None or path == DEFAULT_CORPUS:
        res = resources.files("moeopt.data.corpus") / f"{DEFAULT_CORPUS}.txt"
        return DEFAULT_CORPUS, res.read_text(encoding="utf-8")
    p = Path(path)
    text = files.read_text(p, files.MAX_TRACE_BYTES)  # regular file, size cap, UTF-8
    if not text.strip():
        raise InputError(str(path), "file", "empty corpus; need English text")
    return p.name, text


def load_corpus(path: str | None = None, max_tokens: int | None = None) -> Corpus:
    """Tokenise a corpus with the model's WordPiece tokenizer (paragraphs in file order)."""
    from moeopt.models.bert_moe import tokenize

    name, text = read_text(path)
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    ids = tokenize(paragraphs)
    stream = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
    if max_tokens is not None:
        stream = stream[:max_tokens]
        name = f"{name}[:{max_tokens}]"
    return Corpus(name, stream)
