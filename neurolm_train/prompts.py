"""The instruction tasks: exact prompts and answers (docs/neurolm-reference.md §5.2), GPT-2 BPE via local tiktoken.

``TASKS`` is the task-id table used by the loader (batch key ``task``) and by evaluation: the six
downstream tasks in the official code's order, then ``pretrain`` (unlabeled windows, no prompt). Shard folders are
named by ``Task.name`` (``OUT/shards/<name>/``).

Text layout of one instruction sample (reference §5.1): ``[SEP]=50257``, the prompt tokens, the answer tokens,
the tokens of ``" <|endoftext|>"``, then padding with 50256 up to ``TEXT_MAX_LEN`` = 80. Only answer
tokens (and the terminator) are supervised. The official code supervises one extra token (``" ("``) for
TUEV and HMC (reference §5.1, an inconsistency); here every task uses the same rule.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import tiktoken
from tiktoken.load import data_gym_to_mergeable_bpe_ranks

#: GPT-2 end-of-text token id; also the text padding id (reference §5.1).
EOT: int = 50256
#: ``[SEP]``: the first id past GPT-2's vocabulary, prefixed to every prompt (reference §5.2, §4.1).
SEP: int = 50257
#: Text length of an instruction sample, [SEP] and padding included (reference §1.2 item 5).
TEXT_MAX_LEN: int = 80
#: Environment variable that points to a folder holding GPT-2's ``vocab.bpe`` and ``encoder.json``.
TOKENIZER_ENV: str = "NEUROLM_GPT2_TOKENIZER"
_DEFAULT_TOKENIZER_DIR = Path(__file__).resolve().parents[2] / "shared" / "gpt2-tokenizer"
# The GPT-2 pre-tokenizer regex (tiktoken's r50k/gpt2 pattern).
_GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


@dataclass(frozen=True)
class Task:
    """One task of the multi-task mix.

    Attributes:
        name: shard folder name (lower case).
        prompt: the question, ending exactly as at inference (reference §5.2); None for ``pretrain``.
        answers: answer text per class label (index = label).
        result_idx: index of the answer word after ``decoded.split(' ')`` in the paper's parser (reference §5.3).
        kind: ``binary``, ``multiclass`` or ``unlabeled``.
    """

    name: str
    prompt: str | None
    answers: tuple[str, ...]
    result_idx: int
    kind: str

    @property
    def n_classes(self) -> int:
        return len(self.answers)


_LETTERS = "ABCDEF"
#: Task table; the index is the task id (batch key ``task``). Prompts and answers: reference §5.2.
TASKS: tuple[Task, ...] = (
    Task("tuab", "Question: Is this EEG segment abnormal? Answer:", (" No", " Yes"), 7, "binary"),
    Task(
        "tuev",
        "Question: Which event type does this EEG segment belong to? Options: (A) spike and slow wave. "
        "(B) generalized periodic epileptiform discharge. (C) periodic lateralized epileptiform discharge. "
        "(D) eye movement. (E) artifact. (F) background. Answer: (",
        tuple(f"{c})" for c in _LETTERS[:6]),
        34,
        "multiclass",
    ),
    Task(
        "seed",
        "Question: Which emotion type does this EEG segment belong to? Answer:",
        (" Positive", " Neutral", " Negative"),
        11,
        "multiclass",
    ),
    Task(
        "hmc",
        "Question: Which sleep type does this EEG segment belong to? Options: (A) Wake. (B) NREM-1. "
        "(C) NREM-2. (D) NREM-3. (E) REM. Answer: (",
        tuple(f"{c})" for c in _LETTERS[:5]),
        22,
        "multiclass",
    ),
    Task("workload", "Question: Is this EEG segment of high workload? Answer:", (" No", " Yes"), 9, "binary"),
    Task(
        "tusl",
        "Question: Which type does this EEG segment belong to? Options: (A) background. (B) seizure. "
        "(C) slowing. Answer: (",
        tuple(f"{c})" for c in _LETTERS[:3]),
        17,
        "multiclass",
    ),
    Task("pretrain", None, (), -1, "unlabeled"),
    # Not in the paper (appended, so the ids above do not move): prompts in the paper's binary style for the
    # ``mi`` (EEGMMIDB left/right fist imagery, T1 -> 0, T2 -> 1) and ``adhd`` (control 0, ADHD 1) tasks.
    Task(
        "mi",
        "Question: Which hand does this EEG segment imagine moving? Answer:",
        (" Left", " Right"),
        10,
        "binary",
    ),
    Task(
        "adhd",
        "Question: Does this EEG segment come from a child with ADHD? Answer:",
        (" No", " Yes"),
        12,
        "binary",
    ),
)
TASK_IDS: dict[str, int] = {t.name: i for i, t in enumerate(TASKS)}


def task_id(name: str) -> int:
    """Task id of a shard folder name. Raises ValueError for an unknown task."""
    try:
        return TASK_IDS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known: {sorted(TASK_IDS)}") from None


def tokenizer_dir(path: str | os.PathLike | None = None) -> Path:
    """The GPT-2 BPE folder: ``path``, else ``$NEUROLM_GPT2_TOKENIZER``, else ``../shared/gpt2-tokenizer``."""
    return Path(path or os.environ.get(TOKENIZER_ENV) or _DEFAULT_TOKENIZER_DIR)


@lru_cache(maxsize=4)
def gpt2_encoding(path: str | None = None) -> tiktoken.Encoding:
    """GPT-2 BPE (50257 ids, ``<|endoftext|>`` = 50256) built offline from ``vocab.bpe`` + ``encoder.json``.

    Raises FileNotFoundError when the files are missing (no download is ever attempted).
    """
    d = tokenizer_dir(path)
    bpe, enc_json = d / "vocab.bpe", d / "encoder.json"
    if not (bpe.is_file() and enc_json.is_file()):
        raise FileNotFoundError(f"GPT-2 tokenizer files not found in {d} (set ${TOKENIZER_ENV})")
    ranks = data_gym_to_mergeable_bpe_ranks(vocab_bpe_file=str(bpe), encoder_json_file=str(enc_json))
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=_GPT2_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": EOT},
        explicit_n_vocab=50257,
    )


def _encode(text: str, enc: tiktoken.Encoding) -> list[int]:
    return enc.encode(text, allowed_special={"<|endoftext|>"})


@lru_cache(maxsize=64)
def prompt_ids(tid: int, tokenizer: str | None = None) -> tuple[int, ...]:
    """``[SEP]`` + prompt tokens of task ``tid`` (what the model sees at inference). Raises ValueError for
    ``pretrain``."""
    task = TASKS[tid]
    if task.prompt is None:
        raise ValueError(f"task {task.name!r} has no prompt")
    return (SEP, *_encode(task.prompt, gpt2_encoding(tokenizer)))


@lru_cache(maxsize=64)
def answer_ids(tid: int, tokenizer: str | None = None) -> tuple[tuple[int, ...], ...]:
    """Per class label, the supervised continuation: answer tokens + tokens of ``" <|endoftext|>"``."""
    enc = gpt2_encoding(tokenizer)
    return tuple(tuple(_encode(a + " <|endoftext|>", enc)) for a in TASKS[tid].answers)


def instruction_arrays(
    tids: np.ndarray, labels: np.ndarray, tokenizer: str | None = None, text_max_len: int = TEXT_MAX_LEN
) -> tuple[np.ndarray, np.ndarray]:
    """Training text for a batch: ids and next-token targets, supervised on the answer only (reference §5.1).

    Args:
        tids: (B,) task ids; labels: (B,) class labels (>= 0).
    Returns:
        ``text_ids`` (B, text_max_len) int64, [SEP] first, padded with 50256; ``text_targets``
        (B, text_max_len) int64, -1 except ``targets[i] = ids[i+1]`` for the answer positions.
    Raises:
        ValueError on an unlabeled sample, a label out of range or a text longer than ``text_max_len``.
    """
    b = len(tids)
    ids = np.full((b, text_max_len), EOT, dtype=np.int64)
    tgt = np.full((b, text_max_len), -1, dtype=np.int64)
    for i, (t, y) in enumerate(zip(tids.tolist(), labels.tolist(), strict=True)):
        ans = answer_ids(t, tokenizer)
        if not 0 <= y < len(ans):
            raise ValueError(f"label {y} out of range for task {TASKS[t].name!r}")
        p = prompt_ids(t, tokenizer)
        seq = p + ans[y]
        if len(seq) > text_max_len:
            raise ValueError(
                f"{TASKS[t].name}: text of {len(seq)} tokens exceeds text_max_len={text_max_len}"
            )
        ids[i, : len(seq)] = seq
        tgt[i, len(p) - 1 : len(seq) - 1] = seq[len(p) :]
    return ids, tgt


def parse_generation(
    tid: int, prompt_text_ids: list[int], generated: list[int], tokenizer: str | None = None
) -> int:
    """The paper's parser (reference §5.3): decode prompt + generated tokens (after [SEP]), take
    ``split(' ')[result_idx]``; a word starting with ``(`` is cut to 3 characters; look it up among the
    answers. Returns the class label, or -1 when the text cannot be parsed."""
    enc = gpt2_encoding(tokenizer)
    toks = [t for t in list(prompt_text_ids) + list(generated) if t < EOT + 1 and t != SEP]
    words = enc.decode(toks).split(" ")
    task = TASKS[tid]
    if len(words) <= task.result_idx:
        return -1
    word = words[task.result_idx]
    if word.startswith("("):
        word = word[:3]
    table = {("(" + a[:-1] + ")") if a.endswith(")") else a.strip(): k for k, a in enumerate(task.answers)}
    return table.get(word, -1)
