"""Where per-item work runs: this process, a local process pool (the default), or a Ray cluster.

``neurolm-data ingest`` runs one task per recording and ``neurolm-data shard`` one task per shard. Every task
depends only on its arguments and writes its own output file atomically, so the outputs are byte-identical
whatever runs them and however many workers there are; the parent gathers the results and writes the manifests.

Ray (https://docs.ray.io) is the engine for many machines: ``executor="ray"`` submits the same functions as Ray
tasks to the cluster at ``ray_address`` (or ``RAY_ADDRESS``; none: a local Ray instance). Ray re-runs a task whose
worker process died (``max_retries``, Ray's "task fault tolerance"); a task that still dies raises
``WorkerDied`` here, which the caller records as failed for that item only. The workers must see the inputs and
the output folder under the same path or URL (a shared file system or object storage, see the README's
"Scaling out").
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

#: Executors accepted by ``run_ingest`` / ``run_shard`` (and ``--executor``).
EXECUTORS = ("local", "ray")

#: Re-runs of a Ray task whose worker died before it is reported as ``WorkerDied`` (Ray's ``max_retries``; an
#: exception raised by the function itself is never retried).
RAY_MAX_RETRIES = 1


class WorkerDied(RuntimeError):
    """The process running a task died (crash, out of memory, node lost), also on its retry."""


def check_executor(executor: str) -> str:
    """``executor`` if known. Raises ValueError naming the accepted ones otherwise."""
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}: expected one of {', '.join(EXECUTORS)}")
    return executor


def ray_init(address: str | None = None) -> Any:
    """Connect to the Ray cluster at ``address`` (default ``RAY_ADDRESS``; neither: reuse the instance this process
    already started, or start a local one). Returns the ``ray`` module.

    Raises:
        ImportError: ray is not installed (``pip install "neurolm[ray]"``).
    """
    try:
        import ray
    except ImportError as e:  # pragma: no cover - ray is in the test extra
        raise ImportError('--executor ray needs ray: pip install "neurolm[ray]"') from e
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS") or None
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    return ray


def ray_map(
    fn: Callable[..., Any],
    args: Sequence[tuple],
    *,
    address: str | None = None,
    max_retries: int = RAY_MAX_RETRIES,
    num_cpus: float = 1,
) -> Iterator[tuple[int, Any]]:
    """Run ``fn(*a)`` for every ``a`` in ``args`` as Ray tasks; yield ``(index, result)`` as they finish.

    A task whose worker died ``max_retries + 1`` times yields ``(index, WorkerDied(...))`` (the caller records
    that item as failed); an exception raised by ``fn`` itself is re-raised here.
    """
    ray = ray_init(address)
    remote = ray.remote(num_cpus=num_cpus, max_retries=max_retries, retry_exceptions=False)(fn)
    refs = {remote.remote(*a): i for i, a in enumerate(args)}
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        for ref in done:
            try:
                yield refs[ref], ray.get(ref)
            except (
                ray.exceptions.WorkerCrashedError,
                ray.exceptions.NodeDiedError,
                ray.exceptions.OutOfMemoryError,
            ) as err:
                yield (
                    refs[ref],
                    WorkerDied(f"its Ray worker died {max_retries + 1} time(s): {type(err).__name__}"),
                )
            except ray.exceptions.RayTaskError as err:  # fn raised: the original exception
                raise err.as_instanceof_cause() from None


def local_map(
    fn: Callable[..., Any], args: Sequence[tuple], workers: int = 1, mp_context: str | None = None
) -> Iterator[tuple[int, Any]]:
    """Run ``fn(*a)`` for every ``a`` in this process (``workers=1``) or a process pool; yield ``(index, result)``
    as they finish."""
    if workers <= 1 or len(args) <= 1:
        for i, a in enumerate(args):
            yield i, fn(*a)
        return
    import multiprocessing

    ctx = multiprocessing.get_context(mp_context or ("fork" if os.name == "posix" else "spawn"))
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as ex:
        futs = {ex.submit(fn, *a): i for i, a in enumerate(args)}
        pending = set(futs)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                yield futs[f], f.result()


def run_map(
    fn: Callable[..., Any],
    args: Sequence[tuple],
    *,
    executor: str = "local",
    workers: int = 1,
    ray_address: str | None = None,
) -> Iterator[tuple[int, Any]]:
    """``local_map`` or ``ray_map`` by ``executor`` (see ``EXECUTORS``)."""
    if check_executor(executor) == "ray":
        return ray_map(fn, args, address=ray_address)
    return local_map(fn, args, workers)
