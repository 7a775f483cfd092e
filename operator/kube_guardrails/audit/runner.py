"""Read and audit many files, on several cores when there are many.

Parsing YAML is most of an audit's time (the checks themselves are fast), and it is
CPU-bound Python, so big inputs (``PARALLEL_MIN_FILES`` files or more) are split into
chunks of files audited in worker processes. Results come back in input order, so the
report is the same whatever the number of workers; small inputs and stdin stay in
this process, where starting workers would cost more than it saves.
"""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import dataclasses
import datetime
import os
from collections.abc import Callable, Sequence
from typing import IO

from kube_guardrails.audit import core, loader
from kube_guardrails.model import policy as policy_model

PARALLEL_MIN_FILES = 256
CHUNK_FILES = 64

Progress = Callable[[int, int], None]  # (files done, documents read)


@dataclasses.dataclass(frozen=True)
class Job:
    """Everything a worker needs; picklable."""

    policies: tuple[policy_model.Policy, ...]
    now: datetime.datetime
    include_excluded: bool
    max_file_size: int = loader.DEFAULT_MAX_FILE_SIZE


def default_jobs() -> int:
    """The CPUs this process may run on (cgroup/affinity aware where the OS says)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def workers(jobs: int, *, chunks: int, cpus: int | None = None) -> int:
    """Worker processes for ``-j jobs``: more than CPUs only compete for them, more than
    chunks of work sit idle, and ``-j 100000`` must not fork 100,000 processes."""
    return max(1, min(jobs, cpus or default_jobs(), chunks))


def audit_files(
    files: Sequence[str],
    *,
    job: Job,
    jobs: int,
    stdin: IO[bytes] | None = None,
    progress: Progress | None = None,
) -> core.AuditResult:
    """Audit the files (``-``: stdin) in order; ``jobs`` > 1 allows worker processes."""
    if jobs <= 1 or len(files) < PARALLEL_MIN_FILES or loader.STDIN in files:
        return _sequential(files, job=job, stdin=stdin, progress=progress)
    chunks = [list(files[i : i + CHUNK_FILES]) for i in range(0, len(files), CHUNK_FILES)]
    try:
        result = core.AuditResult()
        with concurrent.futures.ProcessPoolExecutor(
            max_workers=workers(jobs, chunks=len(chunks))
        ) as pool:
            for part in pool.map(_audit_chunk, chunks, [job] * len(chunks)):
                merge(result, part)
                if progress is not None:
                    progress(result.files, result.documents)
        return result
    except (OSError, NotImplementedError, concurrent.futures.process.BrokenProcessPool):
        # No worker processes here (a sandbox without semaphores, a killed worker):
        # the same work in this process, from the start, so nothing is counted twice.
        return _sequential(files, job=job, stdin=stdin, progress=progress)


def _sequential(
    files: Sequence[str], *, job: Job, stdin: IO[bytes] | None, progress: Progress | None
) -> core.AuditResult:
    auditor = _auditor(job)
    for path in files:
        for item in loader.load(path, stdin=stdin, max_file_size=job.max_file_size):
            auditor.add(item)
        auditor.end_file()
        auditor.result.files += 1
        if progress is not None:
            progress(auditor.result.files, auditor.result.documents)
    return auditor.result


def _audit_chunk(files: list[str], job: Job) -> core.AuditResult:
    return _sequential(files, job=job, stdin=None, progress=None)


def _auditor(job: Job) -> core.Auditor:
    return core.Auditor(job.policies, now=job.now, include_excluded=job.include_excluded)


def merge(into: core.AuditResult, part: core.AuditResult) -> None:
    into.objects.extend(part.objects)
    into.errors.extend(part.errors)
    for kind, n in part.ignored.items():  # the cap on distinct kinds holds across workers
        if kind in into.ignored or len(into.ignored) < core.MAX_IGNORED_KINDS:
            into.ignored[kind] += n
        else:
            into.ignored[core.OTHER_KINDS] += n
    into.documents += part.documents
    into.files += part.files
