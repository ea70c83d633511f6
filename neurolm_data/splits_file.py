"""``OUT/splits.parquet``: its schema, metadata keys and reader (the one home of that on-disk contract).

Written by ``neurolm_data.split.run_split``; read here by every module that needs a subject's split (the
leakage audit, shard, the leaderboard), so that none of them has to import the module that computes splits.
Columns and metadata are listed in docs/architecture.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

#: Columns and types of ``OUT/splits.parquet`` (docs/architecture.md).
SPLITS_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("subject", pa.string()),
        ("split", pa.string()),
        ("rule", pa.string()),
        ("protocol", pa.string()),
        ("protocol_version", pa.int64()),
        ("salt", pa.string()),
    ]
)
#: ``split`` value of every subject under a ``group`` protocol (within-subject split): each window's split
#: comes from its group (``neurolm_data.windows.plan_windows``).
GROUP_SPLIT = "by_group"
#: ``split`` value of every subject under a ``kfold`` protocol: the split of a subject in fold f comes from its
#: ``fold`` column (``fold_split``); shards are written once, under this split name.
CV_SPLIT = "cv"
#: ``splits.parquet`` of a ``kfold`` protocol: ``SPLITS_SCHEMA`` plus the subject's test fold.
KFOLD_SPLITS_SCHEMA = SPLITS_SCHEMA.append(pa.field("fold", pa.int64()))
#: Parquet key-value metadata keys written with ``splits.parquet``.
META_PROTOCOL = b"neurolm.protocol"
META_PROTOCOL_HASH = b"neurolm.protocol_hash"
META_RECORDINGS_SHA256 = b"neurolm.recordings_sha256"
META_EXCLUDED = b"neurolm.excluded_eval_of"


def read_splits(out: str | Path) -> tuple[pl.DataFrame, dict[str, object]]:
    """``OUT/splits.parquet`` and its metadata.

    Returns:
        ``(table, meta)``: the table (``SPLITS_SCHEMA`` columns) and ``{"protocol": dict, "protocol_hash":
        str, "recordings_sha256": str}``.

    Raises:
        FileNotFoundError: no splits file (the message says which command writes it).
        ValueError: the file lacks the columns or metadata ``run_split`` writes.
    """
    path = Path(out) / "splits.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; run `neurolm-data split {out} --protocol NAME` first")
    arrow = pq.ParquetFile(path).read()  # not pq.read_table: it imports pyarrow.dataset and pandas (~1 s)
    md = arrow.schema.metadata or {}
    missing = [c for c in SPLITS_SCHEMA.names if c not in arrow.column_names]
    if missing or META_PROTOCOL_HASH not in md:
        raise ValueError(
            f"{path}: not a splits file written by neurolm-data split (missing {missing or 'metadata'})"
        )
    meta = {
        "protocol": json.loads(md[META_PROTOCOL]),
        "protocol_hash": md[META_PROTOCOL_HASH].decode(),
        "recordings_sha256": md[META_RECORDINGS_SHA256].decode(),
    }
    return pl.from_arrow(arrow.replace_schema_metadata(None)), meta
