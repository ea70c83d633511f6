"""UniMind's instruction text in GPT-2 BPE: the prompt with the EEG placeholder, the answers, the targets.

Layout of one sample (ours; the released code uses InternLM2's ChatML template with ``<img>`` + M x
``<IMG_CONTEXT>`` + ``</img>`` at the place of ``<image>``, then the question):

    <|endoftext|> "EEG:" [M placeholder positions] "\\n" + question   | answer + " <|endoftext|>"

The question and the answer strings are the task's (``neurolm_train.prompts.TASKS``); M =
``UniMindConfig.n_eeg_tokens(C, T)``. The placeholder ids are ``<|endoftext|>`` and are never read: the model
overwrites their embeddings with the EEG tokens. Only the answer tokens and the terminator are supervised
(the released preprocessing masks everything but the assistant answer and its ``<|im_end|>``).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ...prompts import EOT, TASKS, answer_ids, gpt2_encoding

#: Text before the EEG tokens (after the leading ``<|endoftext|>``).
EEG_TAG: str = "EEG:"


@lru_cache(maxsize=256)
def prefix(tid: int, n_eeg: int, tokenizer: str | None = None) -> tuple[tuple[int, ...], tuple[bool, ...]]:
    """Prompt ids of task ``tid`` with ``n_eeg`` placeholders, and the placeholder flags (same length).
    Raises ValueError for a task without a prompt."""
    task = TASKS[tid]
    if task.prompt is None:
        raise ValueError(f"task {task.name!r} has no prompt")
    enc = gpt2_encoding(tokenizer)
    head = (EOT, *enc.encode_ordinary(EEG_TAG))
    tail = tuple(enc.encode_ordinary("\n" + task.prompt))
    ids = head + (EOT,) * n_eeg + tail
    return ids, (False,) * len(head) + (True,) * n_eeg + (False,) * len(tail)


def instruction_batch(
    tid: int, labels: np.ndarray, n_eeg: int, tokenizer: str | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training text of a one-task batch: ``ids`` (B, S) int64 (right-padded with 50256), ``eeg_pos`` (B, S)
    bool, ``targets`` (B, S) int64 (-1 except ``targets[i] = ids[i+1]`` over the answer and terminator).
    Raises ValueError on a label outside the task's classes."""
    p, pos = prefix(tid, n_eeg, tokenizer)
    answers = answer_ids(tid, tokenizer)
    S = len(p) + max(len(a) for a in answers)
    B = len(labels)
    ids = np.full((B, S), EOT, dtype=np.int64)
    tgt = np.full((B, S), -1, dtype=np.int64)
    eeg = np.zeros((B, S), dtype=bool)
    for i, y in enumerate(np.asarray(labels).tolist()):
        if not 0 <= y < len(answers):
            raise ValueError(f"label {y} out of range for task {TASKS[tid].name!r}")
        seq = p + answers[y]
        ids[i, : len(seq)] = seq
        eeg[i, : len(p)] = pos
        tgt[i, len(p) - 1 : len(seq) - 1] = seq[len(p) :]
    return ids, eeg, tgt
