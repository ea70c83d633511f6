"""The text corpus for the LM loss: a local text file -> GPT-2 BPE uint16 ``.bin`` (nanoGPT format) -> crops.

The official runs use OpenWebText tokenized by nanoGPT's ``prepare.py`` (reference §7, §3.4): a flat uint16
array of token ids with ``<|endoftext|>`` (50256) after each document. Any such ``.bin`` works here;
``prepare_text`` builds one from a plain text file (documents separated by blank lines).

Crops are drawn statelessly from ``(seed, step, rank, micro)``, so resuming at a step reproduces them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .prompts import EOT, gpt2_encoding


def prepare_text(txt: str | os.PathLike, out_bin: str | os.PathLike, tokenizer: str | None = None) -> int:
    """Tokenize a UTF-8 text file into a uint16 nanoGPT ``.bin`` (atomic write); returns the token count.

    Documents are separated by blank lines; each is followed by ``<|endoftext|>`` (50256).
    Raises ValueError when the file holds no text.
    """
    enc = gpt2_encoding(tokenizer)
    docs = [d.strip() for d in Path(txt).read_text(encoding="utf-8").split("\n\n") if d.strip()]
    if not docs:
        raise ValueError(f"{txt}: no text")
    ids = [t for doc in enc.encode_ordinary_batch(docs) for t in (*doc, EOT)]
    arr = np.asarray(ids, dtype=np.uint16)
    out = Path(out_bin)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    arr.tofile(tmp)
    os.replace(tmp, out)
    return int(arr.size)


class TextCrops:
    """Random ``block``-token crops of a uint16 ``.bin`` (memory-mapped).

    ``batch(n, seed, step, rank, micro)`` returns ``(x, y)``, both (n, block) int64, ``y`` = ``x`` shifted by
    one token. Raises ValueError when the corpus is shorter than ``block + 1`` tokens.
    """

    def __init__(self, path: str | os.PathLike, block: int):
        self.path = Path(path)
        self.data = np.memmap(self.path, dtype=np.uint16, mode="r")
        self.block = int(block)
        if len(self.data) < self.block + 1:
            raise ValueError(f"{self.path}: {len(self.data)} tokens, need at least block+1={self.block + 1}")

    def batch(
        self, n: int, seed: int, step: int, rank: int = 0, micro: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([seed, step, rank, micro, 0x7E47])
        starts = rng.integers(0, len(self.data) - self.block, size=n)
        x = np.stack([self.data[s : s + self.block] for s in starts]).astype(np.int64)
        y = np.stack([self.data[s + 1 : s + 1 + self.block] for s in starts]).astype(np.int64)
        return torch.from_numpy(x), torch.from_numpy(y)
