"""Command-line entry points: ``neurolm-data`` (ingest, split, shard, audit) and ``neurolm-train``.

Both are typer apps. Commands are thin: they parse options, build the typed config and call one function of
``neurolm_data`` or ``neurolm_train``, which is also the Python API (``neurolm_data.ingest.run_ingest`` ...).
"""

from __future__ import annotations

import typer

data_app = typer.Typer(
    name="neurolm-data",
    help="Ingest EEG corpora into channel-standardized 200 Hz µV WebDataset shards with Parquet manifests.",
    no_args_is_help=True,
    add_completion=False,
)
train_app = typer.Typer(
    name="neurolm-train",
    help="Train and evaluate NeuroLM (VQ tokenizer, autoregressive pre-training, instruction tuning) on shards.",
    no_args_is_help=True,
    add_completion=False,
)

# ---------------------------------------------------------------- neurolm-data ingest (data-ingest)

# ---------------------------------------------------------------- neurolm-data split / shard (data-split-shard)

# ---------------------------------------------------------------- neurolm-data audit (corpora)

# ---------------------------------------------------------------- neurolm-train vq/pretrain/instruct/evaluate (trainer)

# ---------------------------------------------------------------- neurolm-train leaderboard (leaderboard)


if __name__ == "__main__":  # pragma: no cover
    data_app()
