"""Unlabeled pre-training windows (docs/neurolm-reference.md §2.1, ``prepare_TUH_pretrain.py``).

Each recording is cut into non-overlapping windows of ``⌊1024 / C⌋`` seconds (C = number of stored
channels), so a window is at most 1024 tokens (the stage-1/2 ``block_size``, §1.2); the remainder is dropped.
Every stored channel is kept, in stored order. Examples: 23 channels -> 44 s, 19 -> 53 s, 16 -> 64 s.

Deviation from the official maker, on purpose: the window is capped at 64 s. The tokenizer's time embedding
has 64 rows (``nn.Embedding(64, d)``, §1.2), so with fewer than 16 channels the official ⌊1024 / C⌋-s window
overflows it and crashes (§2.1, §9.7); with the cap such recordings give 64-s windows of fewer than 1024
tokens. The official maker also drops the last 10 s of each TUH file; this task keeps them (the trim is a
TUH-specific choice with no stated reason) and treats every source alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurolm_data.tasks.base import SFREQ, Recording, TaskConfig, TaskError, TaskSpec, Window, register_task


@dataclass(frozen=True)
class PretrainConfig(TaskConfig):
    """Pre-training windowing.

    Attributes:
        token_budget: tokens per window at most; window seconds = ``token_budget // C`` (1024, §1.2 block_size).
        max_window_s: cap on the window length in seconds (64 = rows of the time embedding, §1.2, §9.7).
        min_duration_s: unused here; the minimum is one window, which depends on C (see ``min_duration_s``).
    """

    token_budget: int = 1024
    max_window_s: int = 64


@register_task
class PretrainTask(TaskSpec):
    """Non-overlapping ``min(⌊1024 / C⌋, 64)``-s windows of every stored channel, unlabeled."""

    name = "pretrain"
    version = 1
    default_protocol = "pretrain"
    labelled = False
    classes = ()
    channels = None
    config_class = PretrainConfig

    def window_s(self, n_channels: int) -> int:
        """Window length in seconds for ``n_channels`` channels: ``min(token_budget // C, max_window_s)``.

        Raises:
            TaskError: more channels than ``token_budget`` (not even a 1-s window fits).
        """
        s = min(self.config.token_budget // n_channels, self.config.max_window_s)
        if s < 1:
            raise TaskError(f"{n_channels} channels exceed the {self.config.token_budget}-token budget")
        return s

    def min_duration_s(self, rec: Recording, n_channels: int) -> float:
        """One window: ``window_s(n_channels)`` seconds."""
        return float(self.window_s(n_channels))

    def windows(self, rec: Recording, data: np.ndarray) -> list[Window]:
        """``n_samples // (window_s * 200)`` windows from sample 0, label None."""
        step = self.window_s(len(rec.channels)) * SFREQ
        return [Window(s, step, None) for s in range(0, rec.n_samples - step + 1, step)]
