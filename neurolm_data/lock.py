"""One writer per output folder: an advisory lock (the ``filelock`` library) held while a command writes.

``ingest``, ``split``, ``shard`` (on ``OUT``) and the training stages and ``evaluate`` (on their ``--out``) take
``output_lock(folder, command)`` before they write anything. The lock is ``FOLDER/.neurolm.lock`` (an OS file
lock: ``flock`` on POSIX, released by the kernel when the holder exits, even when it is killed); beside it
``FOLDER/.neurolm.lock.json`` names the holder (pid, host, command, start time, UTC). A second writer is
refused at once with ``OutputLockedError`` naming the holder, never made to wait or to interleave its files
with the first. The lock is re-entrant within one process (``shard`` runs ``split`` under its own lock).
The lock is advisory and local-file-system based: on a network file system without working ``flock`` it
protects nothing more than the file system does.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock, Timeout

#: Lock and holder files inside the locked folder.
LOCK_NAME = ".neurolm.lock"
HOLDER_NAME = ".neurolm.lock.json"

F = TypeVar("F", bound=Callable[..., Any])
_HELD: dict[str, int] = {}  # folders this process holds -> nesting depth


class OutputLockedError(RuntimeError):
    """Another process is writing the output folder; the message names it (pid, host, command, since)."""


def holder(folder: str | Path) -> dict | None:
    """The holder record of ``folder``'s lock as written by its holder (``pid``, ``host``, ``command``,
    ``since``), or None when there is none or it cannot be read."""
    try:
        return json.loads((Path(folder) / HOLDER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _describe(info: dict | None) -> str:
    if not info:
        return "a process that has not yet recorded itself"
    return (
        f"pid {info.get('pid')} on host {info.get('host')}, `{info.get('command')}` since {info.get('since')}"
    )


@contextmanager
def output_lock(folder: str | Path, command: str) -> Iterator[None]:
    """Hold ``folder``'s writer lock for the block (the folder is created).

    Args:
        folder: the output folder. command: what is writing (recorded for the refusal message).

    Raises:
        OutputLockedError: another process holds the lock (the message names it and what to do).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = os.path.realpath(folder)
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    try:
        lock = FileLock(folder / LOCK_NAME, timeout=0, preserve_lock_file=True)
    except TypeError:  # filelock < 3.20 has no preserve_lock_file (and never deletes the file)
        lock = FileLock(folder / LOCK_NAME, timeout=0)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise OutputLockedError(
            f"{folder} is being written by another process ({_describe(holder(folder))}); wait for it to "
            f"finish, or write to another folder"
        ) from None
    _HELD[key] = 1
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command,
        "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    from neurolm_data.store import write_json_atomic

    try:
        write_json_atomic(folder / HOLDER_NAME, info)
        yield
    finally:
        del _HELD[key]
        (folder / HOLDER_NAME).unlink(missing_ok=True)
        lock.release()


def locked(command: str) -> Callable[[F], F]:
    """Decorator: run a function whose first argument is the output folder under ``output_lock``."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(out: str | Path, *args: Any, **kwargs: Any) -> Any:
            with output_lock(out, command):
                return fn(out, *args, **kwargs)

        return inner  # type: ignore[return-value]

    return wrap
