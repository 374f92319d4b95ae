"""Where runs execute (local threads, dask, ray), each one an isolated process, and the sweep
that appends each record as soon as its run ends; runs already recorded are skipped (resume)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from moeopt.bench.isolation import run_isolated
from moeopt.bench.records import _now, make_record
from moeopt.bench.results import append_records, read_results
from moeopt.bench.runs import RunSpec
from moeopt.errors import InputError

EXECUTORS = ("local", "dask", "ray")


def pending(specs: list[RunSpec], results_path: Path) -> list[RunSpec]:
    """The runs not yet in the results file (resume)."""
    done = {r["run_id"] for r in read_results(results_path)} if results_path.exists() else set()
    return [s for s in specs if s.key not in done]


def _timed(spec: RunSpec) -> tuple[dict[str, Any], str]:
    started = _now()
    return run_isolated(spec), started


def execute(specs: list[RunSpec], jobs: int, executor: str = "local",
            scheduler: str | None = None) -> Iterator[tuple[RunSpec, dict[str, Any], str]]:
    """Yield (spec, child output, start time) as runs finish, on the chosen executor."""
    if executor == "local":
        with ThreadPoolExecutor(max_workers=max(jobs, 1)) as pool:
            futures = {pool.submit(_timed, s): s for s in specs}
            for fut in as_completed(futures):
                out, started = fut.result()
                yield futures[fut], out, started
    elif executor == "dask":
        yield from _execute_dask(specs, jobs, scheduler)
    elif executor == "ray":
        yield from _execute_ray(specs, jobs, scheduler)
    else:
        raise InputError("--executor", executor, f"allowed: {', '.join(EXECUTORS)}")


def _execute_dask(specs: list[RunSpec], jobs: int, scheduler: str | None
                  ) -> Iterator[tuple[RunSpec, dict[str, Any], str]]:
    """Each dask task starts the same isolated subprocess, so the hard limit holds on any worker."""
    try:
        from dask.distributed import Client, LocalCluster
        from dask.distributed import as_completed as dask_completed
    except ImportError:
        raise InputError("--executor", "dask",
                         'needs dask.distributed: pip install "dask[distributed]"') from None
    cluster = None if scheduler else LocalCluster(n_workers=1, threads_per_worker=max(jobs, 1),
                                                  processes=False, dashboard_address=None)
    client = Client(scheduler or cluster)
    try:
        futures = {client.submit(_timed, s, pure=False): s for s in specs}
        for fut in dask_completed(list(futures)):
            out, started = fut.result()
            yield futures[fut], out, started
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _execute_ray(specs: list[RunSpec], jobs: int, address: str | None
                 ) -> Iterator[tuple[RunSpec, dict[str, Any], str]]:
    try:
        import ray
    except ImportError:
        raise InputError("--executor", "ray", 'needs Ray: pip install "ray"') from None
    ray.init(address=address, num_cpus=None if address else jobs, ignore_reinit_error=True)
    remote = ray.remote(_timed)
    refs = {remote.remote(s): s for s in specs}
    waiting = list(refs)
    while waiting:
        ready, waiting = ray.wait(waiting, num_returns=1)
        out, started = ray.get(ready[0])
        yield refs[ready[0]], out, started


def run_bench(
    specs: list[RunSpec],
    results_path: Path,
    jobs: int = 1,
    executor: str = "local",
    scheduler: str | None = None,
    progress: Callable[[RunSpec, dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run what is not yet recorded; append each record as soon as its run ends."""
    todo = pending(specs, results_path)
    records = []
    for spec, out, started in execute(todo, jobs, executor, scheduler):
        record = make_record(spec, out, results_path.parent, started)
        append_records(results_path, [record])
        records.append(record)
        if progress:
            progress(spec, record)
    return records
