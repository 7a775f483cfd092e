"""``kube-guardrails audit``: check manifests offline, the way the operator would.

Exit status (stable; CI pipelines depend on it):

- 0: every workload checked and none has a finding at or above ``--fail-on``;
- 1: at least one finding at or above ``--fail-on`` (default ``low``: any finding);
- 2: usage or input error: bad flags, a bad ``--policy``, a path that does not exist,
  an unreadable, oversized or non-regular file, a malformed or refused document (alias
  bombs, excessive nesting, duplicate keys), no input at all (unless
  ``--allow-empty``), a report that cannot be written, or an internal error. Every
  other document is still checked and reported, but the run exits 2, because a
  pipeline must not pass when part of its input was never looked at. Exit 2 never
  comes with a traceback: one line on stderr says what went wrong.

No cluster, kube config or network is touched: the path imports neither kopf nor the
kubernetes client.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import errno
import gc
import os
import sys
from collections.abc import Callable
from typing import IO, TextIO

from kube_guardrails.audit import core, defaults, loader, policyfile, progress, report, runner
from kube_guardrails.checks import registry
from kube_guardrails.model import policy as policy_model
from kube_guardrails.model import quantity

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_ERROR = 2

FORMATS = ("table", "json", "sarif")
FAIL_ON = (*(s.label for s in registry.Severity), "none")
DEFAULT_FAIL_ON = "low"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Check Kubernetes manifests against GuardrailPolicy checks, offline. Reads YAML "
        "files, directories (recursively, *.yaml, *.yml and *.json) or - for stdin; checks Pods "
        "and the pod templates of Deployments, StatefulSets, DaemonSets, ReplicaSets, "
        "Jobs and CronJobs. Exit status: 0 clean, 1 findings at or above --fail-on, "
        "2 usage or input error."
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="file, directory or -")
    parser.add_argument(
        "--policy",
        action="append",
        metavar="FILE",
        default=None,
        help="GuardrailPolicy YAML to apply (repeatable; a file may hold several); "
        f"default: the built-in policy {defaults.NAME} (baseline Pod Security and the "
        "best-practice checks)",
    )
    parser.add_argument(
        "--format", choices=FORMATS, default="table", help="output format (default: table)"
    )
    parser.add_argument(
        "--fail-on",
        choices=FAIL_ON,
        default=DEFAULT_FAIL_ON,
        metavar="SEVERITY",
        help="exit 1 if a finding is at or above this severity: low, medium, high, "
        f"critical, or none to never fail on findings (default: {DEFAULT_FAIL_ON})",
    )
    parser.add_argument(
        "--level",
        choices=policy_model.LEVELS,
        default=None,
        help="override spec.workloads.podSecurity of every policy",
    )
    parser.add_argument(
        "--include-excluded",
        action="store_true",
        help="also check workloads in namespaces the policy excludes (kube-system, "
        "kube-public, kube-node-lease, the operator's namespace, excludeNamespaces)",
    )
    parser.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=0,
        metavar="N",
        help="worker processes for large inputs (default 0: one per CPU; 1: no workers)",
    )
    parser.add_argument(
        "-o", "--output", metavar="FILE", default=None, help="write the report to FILE"
    )
    parser.add_argument(
        "--max-file-size",
        type=_size,
        default=loader.DEFAULT_MAX_FILE_SIZE,
        metavar="BYTES",
        help="read at most this much per file (and from stdin); a larger one is an input "
        "error. Kubernetes quantities are accepted: 64Mi, 1G (default: 64Mi)",
    )
    parser.add_argument(
        "--allow-empty",
        action="store_true",
        help="exit 0 when the input holds no document at all (by default that is an "
        "error: an empty 'kustomize build | kube-guardrails audit -' means the build failed)",
    )


def _size(text: str) -> int:
    try:
        value = quantity.parse_quantity(text)
    except quantity.QuantityError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if value < 1 or value != value.to_integral_value():
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number of bytes")
    return int(value)


def run(args: argparse.Namespace) -> int:
    # A batch run allocates many small objects and keeps the reports: with the default
    # thresholds the cycle collector rescans that growing heap over and over (about 10%
    # of a 10,000-manifest audit). Everything loaded so far is permanent, and a larger
    # young generation keeps collections rare. Only here, in the CLI's own process.
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    stderr = sys.stderr if sys.stderr is not None else open(os.devnull, "w")  # noqa: SIM115
    try:
        if sys.stdout is None:  # started with stdout closed (">&-")
            raise OutputError("standard output is closed")
        code = execute(
            args,
            stdin=getattr(sys.stdin, "buffer", None),  # None: stdin closed ("<&-")
            stdout=sys.stdout,
            stderr=stderr,
        )
        try:
            sys.stdout.flush()
        except OSError:
            if code != EXIT_ERROR:
                raise
            _silence_stdout()  # execute() already said the report could not be written
        return code
    except KeyboardInterrupt:
        _give_up(stderr, "interrupted")
        return 130
    except OutputError as e:
        return _give_up(stderr, f"cannot write the report: {e}")
    except OSError as e:
        # stdout full (/dev/full), a closed pipe: the report is lost, so this run
        # cannot count as a pass or a plain failure.
        return _give_up(stderr, f"cannot write the report: {e.strerror or e}")
    except MemoryError:
        return _give_up(stderr, "out of memory (split the input or lower --max-file-size)")
    except RecursionError:
        return _give_up(stderr, "internal error: input nested too deeply")
    except Exception as e:
        return _give_up(stderr, f"internal error: {type(e).__name__}: {report.escape(e)}")


class OutputError(Exception):
    """The report could not be written."""


def _silence_stdout() -> None:
    # Whatever is left in stdout's buffer would fail again at interpreter exit and print
    # a traceback-like "Exception ignored" note; point it at /dev/null instead.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        if sys.stdout is not None:
            os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _give_up(stderr: TextIO, message: str) -> int:
    _silence_stdout()
    try:
        stderr.write(f"kube-guardrails audit: error: {message}\n")
        stderr.flush()
    except (OSError, ValueError):
        pass
    return EXIT_ERROR


def execute(
    args: argparse.Namespace,
    *,
    stdin: IO[bytes] | None,
    stdout: TextIO,
    stderr: TextIO,
    now: datetime.datetime | None = None,
    progress_enabled: bool | None = None,
    clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
) -> int:
    """The whole command with its streams passed in (the tests drive it this way)."""

    def fail(message: str) -> int:
        # Messages quote file names and policy fields, which anyone may write: escaped,
        # line by line, so they cannot clear the terminal or overprint a fake "PASS".
        text = "\n".join(report.escape(line) for line in message.split("\n"))
        stderr.write(f"kube-guardrails audit: error: {text}\n")
        return EXIT_ERROR

    now = now or clock()
    policy_paths: list[str] = args.policy or []
    if [*policy_paths, *dict.fromkeys(args.paths)].count(loader.STDIN) > 1:
        return fail(
            "standard input (-) can be read only once: give it to one --policy or as a "
            "PATH, not both"
        )
    clobbered = _inputs_named_by_output(args.output, [*policy_paths, *args.paths])
    if clobbered:
        return fail(
            f"--output {args.output} is also an input ({clobbered}); the report would "
            "overwrite it: write the report elsewhere"
        )
    try:
        loaded = load_policies(policy_paths)
    except policyfile.PolicyFileError as e:
        return fail(f"bad --policy: {e}")
    policies = [p.policy for p in loaded]
    if args.level is not None:
        policies = [core.with_level(p, args.level) for p in policies]
    infos = [report.policy_info(p, lp.source) for p, lp in zip(policies, loaded, strict=True)]

    files, missing = loader.expand(args.paths)
    clobbered = _inputs_named_by_output(args.output, files)
    if clobbered:
        return fail(
            f"--output {args.output} is one of the input files ({clobbered}); the report "
            "would overwrite it: write the report elsewhere"
        )
    bar = progress.Progress(stderr, total_files=len(files), enabled=progress_enabled)
    if args.jobs < 0:
        return fail(f"-j/--jobs must be 0 (one per CPU) or more, not {args.jobs}")
    max_file_size = getattr(args, "max_file_size", loader.DEFAULT_MAX_FILE_SIZE)
    job = runner.Job(
        policies=tuple(policies),
        now=now,
        include_excluded=args.include_excluded,
        max_file_size=max_file_size,
    )
    result = runner.audit_files(
        files,
        job=job,
        jobs=args.jobs or runner.default_jobs(),
        stdin=stdin,
        progress=lambda done, documents: bar.update(files=done, documents=documents),
    )
    bar.done()
    result.errors[:0] = missing

    fail_on = None if args.fail_on == "none" else registry.Severity.parse(args.fail_on)
    rep = report.Report(
        result=result,
        policies=infos,
        fail_on=fail_on,
        include_excluded=args.include_excluded,
    )
    if result.documents == 0 and not result.errors and not getattr(args, "allow_empty", False):
        # "kustomize build | kube-guardrails audit -" with a failed build reads nothing:
        # that must not pass, and
        # no report (which would say PASS) is written.
        return fail(
            "no YAML document in the input (an empty file, directory or stdin); "
            "--allow-empty accepts that"
        )
    out_stream: TextIO
    if args.output:
        try:
            out_stream = open(args.output, "w", encoding="utf-8")  # noqa: SIM115
        except OSError as e:
            return fail(f"cannot write --output {args.output}: {e.strerror or e}")
    else:
        out_stream = stdout
    sink: report.Writer = WholeWrites(out_stream) if out_stream is stdout else out_stream
    try:
        if args.format == "json":
            report.write_json(rep, sink)
        elif args.format == "sarif":
            report.write_sarif(rep, sink)
        else:
            report.write_table(rep, sink, color=use_color(out_stream))
        out_stream.flush()
    except OSError as e:
        if out_stream is not stdout:
            _close_quietly(out_stream)
        where = f"--output {args.output}" if args.output else "the report to standard output"
        return fail(f"cannot write {where}: {e.strerror or e}")
    if out_stream is not stdout:
        try:
            out_stream.close()
        except OSError as e:
            return fail(f"cannot write --output {args.output}: {e.strerror or e}")

    if args.format != "table" or args.output:
        # The report may go to a file or a parser; people still need to see errors.
        for err in result.errors:
            stderr.write(
                f"kube-guardrails audit: error: {report.escape(err.where())}: "
                f"{report.escape(err.message)}\n"
            )
    if not result.objects and not result.errors:
        stderr.write(
            "kube-guardrails audit: warning: no Pods or workloads with a pod template "
            "found in the input\n"
        )
    if result.errors:
        return EXIT_ERROR
    return EXIT_FINDINGS if rep.failed else EXIT_OK


class WholeWrites:
    """Writes to a text stream's binary buffer that go out whole or raise.

    CPython's buffered writer returns a short count when a pipe's reader goes away in
    the middle of a large write (``audit ... | head``), and the text layer ignores that
    count: the report would be cut and the run exit as if it had been delivered. Here a
    short write is retried, so the closed pipe surfaces as BrokenPipeError (exit 2).
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._buffer: IO[bytes] | None = getattr(stream, "buffer", None)
        self._encoding = getattr(stream, "encoding", None) or "utf-8"

    def write(self, text: str, /) -> int:
        if self._buffer is None:  # a plain text stream (StringIO in the tests)
            return self._stream.write(text)
        self._stream.flush()  # anything already written through the text layer first
        view = memoryview(text.encode(self._encoding, "backslashreplace"))
        while view:
            n = self._buffer.write(view)
            if not n:
                raise OSError(errno.EIO, "the output accepted nothing")
            view = view[n:]
        return len(text)


def _inputs_named_by_output(output: str | None, inputs: list[str]) -> str | None:
    """The input (a file given, or found in a directory) that ``--output`` would replace.

    The report is opened after every input was read, so the audit itself would be
    right, but the manifest or policy would be gone, replaced by its own report.
    """
    if not output:
        return None
    try:
        out = os.stat(output)
    except OSError:
        return None  # does not exist yet: it cannot be an input
    for path in inputs:
        if path == loader.STDIN:
            continue
        try:
            st = os.stat(path)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (out.st_dev, out.st_ino):
            return loader.display_name(path)
    return None


def _close_quietly(stream: TextIO) -> None:
    with contextlib.suppress(OSError):
        stream.close()


def load_policies(paths: list[str]) -> list[policyfile.LoadedPolicy]:
    """The policies of ``--policy`` files, or the built-in default policy."""
    if paths:
        return policyfile.load(paths)
    return [policyfile.LoadedPolicy(policy=defaults.policy(), source="built-in", document=1)]


def use_color(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
