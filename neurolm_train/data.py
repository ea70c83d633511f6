"""Streaming token batches from WebDataset shards (docs/architecture.md, "Token batches").

Input: ``ROOT/TASK/SPLIT/*.tar`` (``eeg.npy`` float32 (C, S*200) µV + ``meta.json``) and
``ROOT/TASK/windows.parquet``, where ROOT is ``OUT/shards``. Output: dicts of tensors

    x (B, L, 200) float32 in units of 100 µV (reference §1.1), chans (B, L) int64 (``PAD_INDEX`` = 136 at
    padding), times (B, L) int64, mask (B, L) bool, n_chans (B,) int64, label (B,) int64 (-1 unlabeled),
    task (B,) int64 (index into ``prompts.TASKS``), key (list of B str)

with tokens time-major (reference §1.2: all channels of second 0, then second 1 ...) and L the longest sample
of the batch. No attention mask is built here (reference §9.19): models build it batched on the device.

Training order (``TrainStream``) is a pure function of (seed, epoch, world size, rank, stream count, batch
index), so a run resumes mid-epoch exactly and every rank yields exactly ``batches_per_epoch`` batches:

* Each rank runs ``n_streams`` logical streams (one per DataLoader worker); slot = rank * n_streams + stream.
  Batch g of a rank (counted over the run) comes from stream ``g % n_streams``; streams reseed per epoch.
* Per task, a stream reads passes over the task's shards in a seeded order. With at least as many shards
  as slots each slot reads its own shards (shard-level assignment); otherwise every slot reads all shards
  and keeps every n_slots-th sample (sample-level striding over a global order, counted across passes, so
  a slot is never empty). Passes repeat as needed, so no slot runs dry and no rank waits for another.
* Samples go through a seeded shuffle buffer (webdataset's ``shuffle``), then a seeded draw picks the task
  of each sample by the mixing weights (``proportional`` as in the paper (reference §5.4), ``tempered`` p ∝ n^(1/T),
  or ``uniform``; reference §9.21).
* To resume mid-epoch, streams regenerate the epoch and drop the consumed batches without decoding them.

Work split (``shardio``): DataLoader workers read shard indexes, shuffle, mix and parse ``meta.json``, and
send window records (shard path + byte offset, a few hundred bytes); the training process maps the shard
and copies each window once, transposed, into the batch (``collate``). Moving decoded batches through
worker shared memory would cost more than the whole decode.

Evaluation order (``eval_batches``) is one exact pass, task by task, shards in name order, samples strided
over ranks; batches never mix tasks.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import count
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from webdataset.filters import _shuffle

from neurolm_data.channels import PAD_INDEX
from neurolm_data.store import content_hash

from .prompts import task_id
from .shardio import eeg_ref, open_sample, read_ref, shard_entries, tar_samples

#: Samples per second-long patch: 200 Hz x 1 s (reference §1.1).
PATCH: int = 200
#: Scale of the model input: µV / 100 (reference §1.1).
UV_PER_UNIT: float = 100.0
#: Rows of the VQ encoder's ``time_embed`` = longest window in seconds (reference §1.2 item 6, §9.7).
MAX_SECONDS: int = 64


class ShardError(ValueError):
    """Shards do not match their index (``shards.json``) or a member does not decode; the message names the
    shard (and the member where there is one) and how to check or rebuild."""


@dataclass(frozen=True)
class TaskShards:
    """The shards of one task split. ``n_windows`` comes from ``windows.parquet``; ``manifest_hash`` is the
    sha256 of that file (recorded in results)."""

    name: str
    tid: int
    shards: tuple[str, ...]
    n_windows: int
    manifest_hash: str


def _fix(d: Path | str) -> str:
    out, task = _parent2(d)
    return f"check with `neurolm-data verify {out}` and rebuild with `neurolm-data shard {out} --task {task}`"


def _parent2(d: Path | str) -> tuple[str, str]:
    """(OUT, TASK) of a task folder ``OUT/shards/TASK`` (a local path or a URL)."""
    parts = str(d).rstrip("/").rsplit("/", 2)
    return (parts[0] if len(parts) == 3 else ".", parts[-1])


def _join(d: Path | str, rel: str) -> str:
    return str(Path(d) / rel) if isinstance(d, Path) else f"{str(d).rstrip('/')}/{rel}"


def _fs(d: Path | str):
    """(fsspec filesystem, path) of a task folder: the local one for a path, the URL's store (``s3://`` ...)."""
    import fsspec

    return fsspec.core.url_to_fs(str(d))


def check_shards(
    d: Path | str, split: str, n_windows: int, manifest_hash: str, verify: bool = False
) -> tuple[str, ...]:
    """The shard paths of ``d/split`` after checking them against ``d/shards.json``.

    ``d`` is a local folder or an fsspec URL (``s3://bucket/OUT/shards/TASK``, read with fsspec; the returned
    shard URLs are streamed by webdataset through fsspec, see ``shardio``): the same checks either way.
    Cheap checks always (no shard is read): the index exists and lists exactly the ``.tar`` files on disk for
    the split, each file has the recorded size, the recorded sample counts add up to the split's rows of
    ``windows.parquet`` (``n_windows``), and ``windows.parquet`` has the recorded sha256 (``manifest_hash``).
    With ``verify`` every shard's sha256 is compared too (~1-2 s per GB; a remote shard is read once for it).

    Raises:
        ShardError: any mismatch, naming the shard (or the index) and the fix.
    """
    fs, base = _fs(d)
    base = base.rstrip("/")
    index = _join(d, "shards.json")
    if not fs.isfile(f"{base}/shards.json"):
        raise ShardError(
            f"{index}: missing: shards of {d} are not verifiable without the index that "
            f"`neurolm-data shard` writes; {_fix(d)}"
        )
    try:
        manifest = json.loads(fs.cat_file(f"{base}/shards.json").decode("utf-8"))
        listed = {s["path"]: s for s in manifest["shards"] if s["split"] == split}
        parquet_sha = manifest["windows_parquet_sha256"]
    except (ValueError, KeyError, TypeError) as err:
        raise ShardError(
            f"{index}: not a readable shard index ({type(err).__name__}: {err}); {_fix(d)}"
        ) from None
    if parquet_sha != manifest_hash:
        raise ShardError(
            f"{_join(d, 'windows.parquet')}: sha256 {manifest_hash[:16]}... differs from the "
            f"{parquet_sha[:16]}... recorded in shards.json; {_fix(d)}"
        )
    found = fs.glob(f"{base}/{split}/*.tar", detail=True) if fs.isdir(f"{base}/{split}") else {}
    on_disk = {p.rstrip("/")[len(base) + 1 :]: int(info["size"]) for p, info in found.items()}
    missing, extra = sorted(set(listed) - set(on_disk)), sorted(set(on_disk) - set(listed))
    if missing:
        raise ShardError(
            f"{_join(d, missing[0])}: listed in shards.json but missing ({len(missing)} of "
            f"{len(listed)} {split} shards missing); {_fix(d)}"
        )
    if extra:
        raise ShardError(
            f"{_join(d, extra[0])}: not listed in shards.json ({len(extra)} unlisted {split} "
            f"shard(s)); {_fix(d)}"
        )
    for rel, rec in sorted(listed.items()):
        if on_disk[rel] != rec["bytes"]:
            raise ShardError(
                f"{_join(d, rel)}: {on_disk[rel]} bytes, shards.json records {rec['bytes']} "
                f"(truncated or modified); {_fix(d)}"
            )
    count = sum(int(rec["samples"]) for rec in listed.values())
    if count != n_windows:
        raise ShardError(
            f"{index}: {split} shards hold {count} windows, windows.parquet lists {n_windows}; {_fix(d)}"
        )
    if verify:
        for rel, rec in sorted(listed.items()):
            h = hashlib.sha256()
            with fs.open(f"{base}/{rel}", "rb") as f:
                while chunk := f.read(1 << 22):
                    h.update(chunk)
            if h.hexdigest() != rec["sha256"]:
                raise ShardError(
                    f"{_join(d, rel)}: sha256 differs from shards.json (modified bytes); {_fix(d)}"
                )
    return tuple(_join(d, rel) for rel in sorted(listed))


def _split_roots(root: str | Path) -> list[Path | str]:
    """``root`` split at ``os.pathsep`` (not at the ``:`` of a URL scheme); URLs stay strings."""
    parts = re.split(r":(?!//)", str(root)) if os.pathsep == ":" else str(root).split(os.pathsep)
    return [
        p if "://" in p and not p.startswith("file://") else Path(p.removeprefix("file://"))
        for p in parts
        if p
    ]


def discover(root: str | Path, tasks: list[str], split: str, verify: bool = False) -> list[TaskShards]:
    """Find ``ROOT/TASK/split/*.tar`` for each task; ``root`` may list several ``OUT/shards`` roots joined
    by ``os.pathsep`` (the first root holding a task wins), each a local folder or an fsspec URL
    (``s3://bucket/OUT/shards``). The shards are checked against ``shards.json`` (``check_shards``; sha256 of
    every shard too with ``verify``).

    Raises:
        FileNotFoundError: a task has no shards or no ``windows.parquet`` in any root.
        ShardError: the shards do not match their index.
    """
    roots = _split_roots(root)
    out = []
    for name in tasks:
        cands = [_join(r, name) if isinstance(r, str) else r / name for r in roots]
        d = next((c for c in cands if _fs(c)[0].isfile(_fs(c)[1].rstrip("/") + "/windows.parquet")), cands[0])
        fs, base = _fs(d)
        base = base.rstrip("/")
        if not fs.isfile(f"{base}/windows.parquet"):
            raise FileNotFoundError(f"no shards for task {name!r} split {split!r} under {root}")
        data = fs.cat_file(f"{base}/windows.parquet")
        n = pl.read_parquet(io.BytesIO(data), columns=["split"]).filter(pl.col("split") == split).height
        digest = hashlib.sha256(data).hexdigest()
        shards = check_shards(d, split, int(n), digest, verify)  # a listed shard that is gone is named there
        if not shards:
            raise FileNotFoundError(f"no shards for task {name!r} split {split!r} under {root}")
        out.append(TaskShards(name, task_id(name), shards, int(n), digest))
    return out


def mixing_weights(counts: list[int], mode: str = "proportional", temperature: float = 2.0) -> np.ndarray:
    """Task sampling probabilities: ``proportional`` (p ∝ n, the paper's ConcatDataset, reference §5.4),
    ``tempered`` (p ∝ n^(1/temperature)) or ``uniform`` (reference §9.21). Raises ValueError on an unknown mode
    or an empty task."""
    n = np.asarray(counts, dtype=np.float64)
    if (n <= 0).any():
        raise ValueError(f"every task needs windows, got counts {counts}")
    if mode == "proportional":
        w = n
    elif mode == "tempered":
        w = n ** (1.0 / temperature)
    elif mode == "uniform":
        w = np.ones_like(n)
    else:
        raise ValueError(f"mixing mode {mode!r}: expected proportional, tempered or uniform")
    return w / w.sum()


def _seed(*parts: object) -> int:
    """A 64-bit seed from any tuple of parts, stable across processes (unlike ``hash``)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little")


def window_tokens(eeg: np.ndarray, channel_indices: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One window (C, S*200) µV -> time-major tokens (reference §1.2); ``collate`` does the same into a batch.

    Returns ``x`` (S*C, 200) float32 in 100 µV units, ``chans`` (S*C,) int64, ``times`` (S*C,) int64.
    Raises ValueError when the length is not whole seconds or the channel list does not match.
    """
    _check_shape(eeg.shape, channel_indices, "window")
    b = collate([{"eeg": eeg, "shape": eeg.shape, "idx": channel_indices, "key": "", "label": -1, "task": 0}])
    return b["x"][0].numpy(), b["chans"][0].numpy(), b["times"][0].numpy()


def _check_shape(shape: tuple[int, ...], channel_indices: list[int], key: str) -> None:
    if len(shape) != 2 or shape[1] % PATCH or len(channel_indices) != shape[0]:
        raise ValueError(
            f"{key}: window {shape} with {len(channel_indices)} channel indices: need (C, S*{PATCH})"
        )


def decode_sample(sample: dict, max_tokens: int) -> dict:
    """Raw shard sample -> window record for ``collate``: ``eeg`` (an ``eeg_ref``: shard location, or the
    array for shards read through ``tarfile``), ``shape`` (C, S*200), ``idx`` (channel indices), ``key``,
    ``label`` (-1 if unlabeled), ``task`` (task id). Raises ValueError on a malformed window or one over
    ``max_tokens`` tokens or ``MAX_SECONDS`` seconds."""
    key = sample.get("__key__")
    url = sample.get("__url__", "?")
    missing = [m for m in ("eeg.npy", "meta.json") if m not in sample]
    if missing:
        have = sorted(k for k in sample if not k.startswith("__"))
        raise ShardError(
            f"{url}: sample {key} has no {' or '.join(missing)} member (members: "
            f"{', '.join(f'{key}.{k}' for k in have) or 'none'}); run `neurolm-data verify` on its OUT"
        )
    member = f"{key}.meta.json"
    try:
        meta = json.loads(bytes(sample["meta.json"]))
        member = f"{key}.eeg.npy"
        eeg = eeg_ref(sample["eeg.npy"])
        arr = read_ref(eeg) if not isinstance(eeg, np.ndarray) else eeg
        if "window_hash" in meta and content_hash(np.ascontiguousarray(arr, "<f4")) != meta["window_hash"]:
            raise ValueError(f"window_hash differs from meta.json's {meta['window_hash']} (modified bytes)")
    except (ValueError, KeyError, TypeError, SyntaxError, UnicodeDecodeError) as err:
        raise ShardError(
            f"{url}: member {member}: cannot decode ({type(err).__name__}: {err}); run "
            "`neurolm-data verify` on its OUT"
        ) from None
    shape = tuple(eeg.shape) if isinstance(eeg, np.ndarray) else eeg[3]
    _check_shape(shape, meta["channel_indices"], key)
    c, s = shape[0], shape[1] // PATCH
    if c * s > max_tokens or s > MAX_SECONDS:
        raise ValueError(
            f"{key}: {c} ch x {s} s = {c * s} tokens exceeds max_tokens={max_tokens} or {MAX_SECONDS} s"
        )
    label = meta.get("label")
    return dict(
        eeg=eeg,
        shape=shape,
        idx=meta["channel_indices"],
        key=key,
        label=-1 if label is None else int(label),
        task=task_id(meta["task"]),
    )


def collate(windows: list[dict]) -> dict:
    """Window records -> one padded token batch (module docstring), tokens time-major, ``x`` = µV / 100.

    Runs in the training process: each window is read from its mapped shard (``read_ref``) and copied once,
    transposed, into the batch, so DataLoader workers only send window records of a few hundred bytes.
    """
    b = len(windows)
    sizes = [(w["shape"][0], w["shape"][1] // PATCH) for w in windows]
    length = max(c * s for c, s in sizes)
    x = np.empty((b, length, PATCH), dtype=np.float32)
    chans = np.full((b, length), PAD_INDEX, dtype=np.int64)
    times = np.zeros((b, length), dtype=np.int64)
    mask = np.zeros((b, length), dtype=bool)
    scale = np.float32(UV_PER_UNIT)
    for i, (w, (c, s)) in enumerate(zip(windows, sizes, strict=True)):
        n = c * s
        eeg = read_ref(w["eeg"]).reshape(c, s, PATCH).transpose(1, 0, 2)
        np.divide(eeg, scale, out=x[i, :n].reshape(s, c, PATCH))  # one pass: transpose + µV -> 100 µV
        x[i, n:] = 0.0
        chans[i, :n].reshape(s, c)[:] = np.asarray(w["idx"], dtype=np.int64)
        times[i, :n].reshape(s, c)[:] = np.arange(s, dtype=np.int64)[:, None]
        mask[i, :n] = True
    return dict(
        x=torch.from_numpy(x),
        chans=torch.from_numpy(chans),
        times=torch.from_numpy(times),
        mask=torch.from_numpy(mask),
        n_chans=torch.tensor([c for c, _ in sizes], dtype=torch.int64),
        label=torch.tensor([w["label"] for w in windows], dtype=torch.int64),
        task=torch.tensor([w["task"] for w in windows], dtype=torch.int64),
        key=[w["key"] for w in windows],
    )


def _records(batch: list[dict]) -> list[dict]:
    """DataLoader ``collate_fn`` for record batches: pass them through unconverted."""
    return batch


class TrainStream(IterableDataset):
    """Seeded, resumable, rank-balanced multi-task batch stream (see the module docstring).

    Args:
        tasks: task shards; weights: (n_tasks,) mixing probabilities; batch_size: windows per batch;
        seed: run seed; batches_per_epoch: batches each rank yields per epoch; world, rank: DDP layout;
        n_streams: logical streams per rank (= DataLoader workers, at least 1); shuffle_buffer: samples held
        by each per-task shuffle buffer; max_tokens: longest allowed window in tokens.

    Batch ``g`` of a rank (g = epoch * batches_per_epoch + index) comes from stream ``g % n_streams``; each
    stream reseeds its task readers, shuffle buffers and task draws at every epoch. Iteration is endless
    from the position set by ``set_position(epoch, batch)``; DataLoader worker j plays the stream of the
    j-th batch from there, so the loader's round robin reproduces the order exactly.
    """

    def __init__(
        self,
        tasks: list[TaskShards],
        weights: np.ndarray,
        batch_size: int,
        seed: int,
        batches_per_epoch: int,
        world: int = 1,
        rank: int = 0,
        n_streams: int = 1,
        shuffle_buffer: int = 1000,
        max_tokens: int = 1024,
    ):
        self.tasks, self.weights = tasks, [float(w) for w in weights]
        self.batch_size, self.seed, self.batches_per_epoch = batch_size, seed, batches_per_epoch
        self.world, self.rank, self.n_streams = world, rank, max(1, n_streams)
        self.shuffle_buffer, self.max_tokens = shuffle_buffer, max_tokens
        self.start = 0

    def set_position(self, epoch: int, batch: int) -> None:
        self.start = epoch * self.batches_per_epoch + batch

    def _task_samples(self, t: int, epoch: int, slot: int, n_slots: int) -> Iterator[dict]:
        task = self.tasks[t]
        by_shard = len(task.shards) >= n_slots
        ordinal = 0
        for p in count():
            order = list(task.shards)
            random.Random(_seed(self.seed, epoch, task.name, p)).shuffle(order)
            got = 0
            for url in order[slot::n_slots] if by_shard else order:
                entries = shard_entries(url)
                if entries is None:  # not plain ustar: webdataset's tarfile reader
                    entries = [(None, s) for s in tar_samples([url])]
                for key, members in entries:
                    got += 1
                    if by_shard or ordinal % n_slots == slot:
                        yield members if key is None else open_sample(url, key, members)
                    ordinal += 1
            if got == 0:
                raise ValueError(f"task {task.name!r}: shards {order} hold no samples")

    def _epoch_batches(self, stream: int, epoch: int) -> Iterator[list[dict]]:
        """Raw (undecoded) batches of one stream in one epoch, endless."""
        slot, n_slots = self.rank * self.n_streams + stream, self.world * self.n_streams
        its = []
        for t, task in enumerate(self.tasks):  # a buffer never holds more than the slot's share of a pass
            buf = max(1, min(self.shuffle_buffer, math.ceil(task.n_windows / n_slots)))
            its.append(
                _shuffle(
                    self._task_samples(t, epoch, slot, n_slots),
                    bufsize=buf,
                    initial=buf,
                    rng=random.Random(_seed(self.seed, epoch, t, slot)),
                )
            )
        mix = random.Random(_seed(self.seed, epoch, "mix", slot))
        idx = range(len(self.tasks))
        while True:
            yield [next(its[t]) for t in mix.choices(idx, weights=self.weights, k=self.batch_size)]

    def _raw(self, g: int, gens: dict) -> list[dict]:
        """Raw batch ``g``; ``gens`` caches (stream -> (epoch, generator)). A generator opened mid-epoch first
        drops, undecoded, the stream's batches before ``g`` in that epoch (exact resume)."""
        bpe, w = self.batches_per_epoch, self.n_streams
        epoch, i = divmod(g, bpe)
        stream = g % w
        if stream not in gens or gens[stream][0] != epoch:
            gen = self._epoch_batches(stream, epoch)
            for _ in range(sum(1 for k in range(i) if (epoch * bpe + k) % w == stream)):
                next(gen)
            gens[stream] = (epoch, gen)
        return next(gens[stream][1])

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        if info is not None and info.num_workers != self.n_streams:
            raise RuntimeError(f"{info.num_workers} DataLoader workers for {self.n_streams} streams")
        # worker j yields batches start+j, start+j+W, ...; without workers one process yields them all
        first, step = (self.start + info.id, self.n_streams) if info else (self.start, 1)
        gens: dict = {}
        for g in count(first, step):
            yield [decode_sample(s, self.max_tokens) for s in self._raw(g, gens)]


class TokenLoader:
    """Endless training batches with an epoch/batch position (saved in checkpoints for exact resume).

    ``next()`` returns the next batch; ``state_dict()`` / ``load_state_dict()`` save and restore
    ``{epoch, batch, seed, world, n_streams, batches_per_epoch}``. One DataLoader iterator serves the whole
    run (workers are not restarted per epoch). ``n_streams`` defaults to ``max(1, num_workers)``; with
    ``num_workers=0`` any stream count plays in-process, in the same order as with that many workers. Raises ValueError on resume when the layout (world size,
    workers, batches per epoch, seed) differs from the saved one.
    """

    def __init__(
        self,
        tasks: list[TaskShards],
        weights: np.ndarray,
        batch_size: int,
        seed: int,
        batches_per_epoch: int | None = None,
        world: int = 1,
        rank: int = 0,
        num_workers: int = 0,
        shuffle_buffer: int = 1000,
        max_tokens: int = 1024,
        pin_memory: bool = False,
        n_streams: int | None = None,
    ):
        bpe = batches_per_epoch or default_batches_per_epoch(tasks, batch_size, world)
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.stream = TrainStream(
            tasks,
            weights,
            batch_size,
            seed,
            bpe,
            world,
            rank,
            n_streams or max(1, num_workers),
            shuffle_buffer,
            max_tokens,
        )
        self.epoch, self.batch, self._it = 0, 0, None

    @property
    def batches_per_epoch(self) -> int:
        return self.stream.batches_per_epoch

    def next(self) -> dict:
        if self._it is None:
            self.stream.set_position(self.epoch, self.batch)
            # an own generator: creating the iterator must not consume the global torch RNG (exact resume)
            self._it = iter(
                DataLoader(
                    self.stream,
                    batch_size=None,
                    num_workers=self.num_workers,
                    collate_fn=_records,
                    generator=torch.Generator().manual_seed(0),
                )
            )
        out = collate(next(self._it))
        if self.pin_memory:
            out = {k: v.pin_memory() if isinstance(v, torch.Tensor) else v for k, v in out.items()}
        self.batch += 1
        if self.batch == self.batches_per_epoch:
            self.epoch, self.batch = self.epoch + 1, 0
        return out

    def state_dict(self) -> dict:
        s = self.stream
        return dict(
            epoch=self.epoch,
            batch=self.batch,
            seed=s.seed,
            world=s.world,
            n_streams=s.n_streams,
            batches_per_epoch=s.batches_per_epoch,
        )

    def load_state_dict(self, state: dict) -> None:
        now = self.state_dict()
        for k in ("seed", "world", "n_streams", "batches_per_epoch"):
            if state[k] != now[k]:
                raise ValueError(
                    f"loader {k} was {state[k]} in the checkpoint, is {now[k]} now: cannot resume exactly"
                )
        self.epoch, self.batch, self._it = int(state["epoch"]), int(state["batch"]), None


class EvalStream(IterableDataset):
    """One exact pass over ``tasks`` (task by task, shards in name order), windows strided over
    ``world`` x workers slots; batches of up to ``batch_size`` windows of one task. With ``limit``, an
    evenly spaced subset: every ``n_windows // limit``-th window, at most ``limit`` per task."""

    def __init__(
        self,
        tasks: list[TaskShards],
        batch_size: int,
        world: int = 1,
        rank: int = 0,
        max_tokens: int = 1024,
        limit: int | None = None,
    ):
        self.tasks, self.batch_size, self.world, self.rank = tasks, batch_size, world, rank
        self.max_tokens, self.limit = max_tokens, limit

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        j, n_workers = (info.id, info.num_workers) if info else (0, 1)
        slot, n_slots = self.rank * n_workers + j, self.world * n_workers
        for task in self.tasks:
            buf = []
            stride = max(1, task.n_windows // self.limit) if self.limit else 1
            for ordinal, s in enumerate(tar_samples(list(task.shards))):
                if ordinal % stride:
                    continue
                pick = ordinal // stride
                if self.limit is not None and pick >= self.limit:
                    break
                if pick % n_slots != slot:
                    continue
                buf.append(decode_sample(s, self.max_tokens))
                if len(buf) == self.batch_size:
                    yield buf
                    buf = []
            if buf:
                yield buf


def eval_batches(
    tasks: list[TaskShards],
    batch_size: int,
    world: int = 1,
    rank: int = 0,
    num_workers: int = 0,
    max_tokens: int = 1024,
    limit: int | None = None,
) -> Iterator[dict]:
    """Batches of one exact pass over the tasks' windows (an evenly spaced subset of at most ``limit``
    windows per task if given); across ranks every window appears once."""
    ds = EvalStream(tasks, batch_size, world, rank, max_tokens, limit)
    # an own generator: creating the iterator must not consume the global torch RNG (exact resume)
    dl = DataLoader(
        ds,
        batch_size=None,
        num_workers=num_workers,
        collate_fn=_records,
        generator=torch.Generator().manual_seed(0),
    )
    return (collate(records) for records in dl)


def default_batches_per_epoch(tasks: list[TaskShards], batch_size: int, world: int) -> int:
    """One pass over all windows in expectation: ``sum(n_windows) // (world * batch_size)``, at least 1."""
    return max(1, math.floor(sum(t.n_windows for t in tasks) / (world * batch_size)))
