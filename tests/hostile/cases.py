"""Hostile inputs for ``kube-guardrails audit``: one builder per case of issue 10.

Shared by the test (``test_hostile_audit.py``: each case in a subprocess with CPU,
memory and wall-clock limits) and the benchmark (``hack/bench/bench_hostile.py``: time,
peak RSS and exit status per case, for this tree or an older one). A case writes its
files into a directory and says how to run the CLI there and what must come out.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Callable

# A Pod that breaks baseline Pod Security (privileged): a document that is checked
# yields a finding, so "checked" and "silently skipped" are told apart.
PRIVILEGED_POD = """\
apiVersion: v1
kind: Pod
metadata: {name: priv, namespace: shop}
spec:
  containers:
  - name: app
    image: registry.example.com/app:1.0
    securityContext: {privileged: true}
"""


@dataclasses.dataclass(frozen=True)
class Run:
    """How to run the CLI: arguments after ``audit`` and the standard streams."""

    args: list[str]
    stdin: bytes | None = b""  # None: stdin closed
    stdout: str = "pipe"  # pipe | closed | /dev/full | broken-pipe


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    issue: str  # the line of issue 10 it stands for
    build: Callable[[pathlib.Path], Run]
    exit: int
    stderr: tuple[str, ...] = ()  # fragments that must appear on stderr
    stdout: tuple[str, ...] = ()  # fragments that must appear on stdout
    valid_json: bool = False  # stdout must parse as JSON


def _write(path: pathlib.Path, text: str | bytes) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def laughs(levels: int = 9, width: int = 9) -> list[str]:
    """Lines of a "billion laughs" alias bomb: anchor ``&l{levels-1}`` is width**levels."""
    lol = ", ".join(['"lol"'] * width)
    lines = [f"l0: &l0 [{lol}]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    return lines


def _bomb_in_labels(d: pathlib.Path) -> Run:
    bomb = "\n".join("    " + line for line in laughs())
    text = f"""apiVersion: v1
kind: Pod
metadata:
  name: bomb
  labels:
{bomb}
spec:
  containers: [{{name: app, image: "registry.example.com/app:1.0"}}]
---
{PRIVILEGED_POD}"""
    return Run([str(_write(d / "bomb.yaml", text))])


def _bomb_in_capabilities(d: pathlib.Path) -> Run:
    defs = "\n".join(laughs())
    text = f"""apiVersion: v1
kind: Pod
x-defs:
{"".join("  " + line + chr(10) for line in defs.splitlines())}metadata: {{name: caps}}
spec:
  containers:
  - name: app
    image: registry.example.com/app:1.0
    securityContext:
      capabilities:
        add: *l8
"""
    return Run([str(_write(d / "caps.yaml", text))])


def _many_aliases_to_privileged(d: pathlib.Path) -> Run:
    lines = [
        "apiVersion: v1",
        "kind: Pod",
        "metadata: {name: many}",
        "spec:",
        "  containers:",
        "  - &c {name: c, image: 'registry.example.com/a:1', securityContext: {privileged: true}}",
    ]
    lines += ["  - *c"] * 200_000
    return Run([str(_write(d / "many.yaml", "\n".join(lines) + "\n"))])


def _bomb_in_policy(d: pathlib.Path) -> Run:
    bomb = "\n".join("    " + line.replace(": &", ": &") for line in laughs())
    policy = f"""apiVersion: kube-guardrails.io/v1alpha1
kind: GuardrailPolicy
metadata:
  name: p
  annotations:
{bomb}
spec: {{}}
"""
    pod = _write(d / "pod.yaml", PRIVILEGED_POD)
    return Run(["--policy", str(_write(d / "policy.yaml", policy)), str(pod)])


def _nested(depth: int) -> str:
    return "[" * depth + "x" + "]" * depth


def _deep_label(d: pathlib.Path) -> Run:
    text = f"""apiVersion: v1
kind: Pod
metadata:
  name: deep
  labels: {{a: {_nested(995)}}}
spec:
  containers: [{{name: app, image: "registry.example.com/app:1.0"}}]
---
{PRIVILEGED_POD}"""
    return Run([str(_write(d / "deep.yaml", text))])


def _deep_label_parallel(d: pathlib.Path) -> Run:
    for i in range(300):
        _write(d / "in" / f"{i:03}.yaml", PRIVILEGED_POD)
    _write(
        d / "in" / "150-deep.yaml",
        f"apiVersion: v1\nkind: Pod\nmetadata: {{name: d, labels: {{a: {_nested(5000)}}}}}\n"
        "spec: {containers: [{name: a, image: x}]}\n",
    )
    return Run(["-j", "2", str(d / "in")])


def _deep_block_nesting(d: pathlib.Path) -> Run:
    # Block style: libyaml's own flow-depth limit (1000) does not apply; ours does.
    lines = ["apiVersion: v1", "kind: Pod", "metadata: {name: blk}", "x:"]
    lines += [" " * (i + 1) + f"k{i}:" for i in range(3000)]
    lines[-1] += " v"
    text = "\n".join(lines) + "\n---\n" + PRIVILEGED_POD
    return Run([str(_write(d / "block.yaml", text))])


def _nested_under_limit(d: pathlib.Path) -> Run:
    text = f"""apiVersion: v1
kind: Pod
metadata: {{name: n, labels: {{a: {_nested(150)}}}}}
spec:
  containers: [{{name: app, image: "registry.example.com/app:1.0"}}]
"""
    return Run([str(_write(d / "n.yaml", text))])


def _slow_quantity(d: pathlib.Path) -> Run:
    text = PRIVILEGED_POD + f"    resources: {{requests: {{cpu: '{'1' * 20000}x'}}}}\n"
    return Run([str(_write(d / "q.yaml", text))])


def _many_slow_quantities(d: pathlib.Path) -> Run:
    containers = "".join(
        f"  - name: c{i}\n    image: registry.example.com/a:1\n"
        f"    resources: {{requests: {{cpu: '{'1' * 2000}x', memory: '{'2' * 2000}y'}}}}\n"
        for i in range(9)
    )
    text = f"apiVersion: v1\nkind: Pod\nmetadata: {{name: q}}\nspec:\n  containers:\n{containers}"
    return Run([str(_write(d / "q36k.yaml", text))])


def _long_image(d: pathlib.Path) -> Run:
    image = "a" * 50_000 + ":" * 50_000 + "/" * 50_000 + "@" + "b" * 50_000
    text = PRIVILEGED_POD.replace("registry.example.com/app:1.0", f"'{image}'")
    return Run([str(_write(d / "img.yaml", text))])


# ESC ] 52 (OSC 52: write the clipboard), ESC [2J (clear screen), BEL, CR over a fake
# PASS line, NUL, and a right-to-left override.
_EVIL = r"\e]52;c;cm0gLXJmIH4K\a\e[2J\rPASS.\0\u202e"


def _control_chars(d: pathlib.Path) -> Run:
    text = f"""apiVersion: v1
kind: Pod
metadata: {{name: "n{_EVIL}", namespace: "ns{_EVIL}"}}
spec:
  volumes: [{{name: "v{_EVIL}", hostPath: {{path: "/{_EVIL}"}}}}]
  containers:
  - name: "c{_EVIL}"
    image: "img{_EVIL}:latest"
    securityContext:
      privileged: true
      capabilities: {{add: ["SYS_{_EVIL}"]}}
"""
    return Run([str(_write(d / "evil.yaml", text))])


def _control_chars_json(d: pathlib.Path) -> Run:
    run = _control_chars(d)
    return Run(["--format", "json", *run.args])


def _control_chars_sarif(d: pathlib.Path) -> Run:
    run = _control_chars(d)
    return Run(["--format", "sarif", *run.args])


def _pod_list(d: pathlib.Path) -> Run:
    pod = "".join("  " + line + "\n" for line in PRIVILEGED_POD.splitlines())
    pod = "- " + pod[2:]
    return Run([str(_write(d / "list.yaml", f"apiVersion: v1\nkind: PodList\nitems:\n{pod}"))])


def _nested_list(d: pathlib.Path) -> Run:
    pod = "".join("      " + line + "\n" for line in PRIVILEGED_POD.splitlines())
    pod = "    - " + pod[6:]
    text = f"apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: List\n  items:\n{pod}"
    return Run([str(_write(d / "nested.yaml", text))])


def _deployment_list(d: pathlib.Path) -> Run:
    text = """apiVersion: apps/v1
kind: DeploymentList
items:
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: web}
  spec:
    template:
      spec:
        hostNetwork: true
        containers: [{name: a, image: "registry.example.com/a:1"}]
"""
    return Run([str(_write(d / "deps.yaml", text))])


def _symlinked_dir(d: pathlib.Path) -> Run:
    _write(d / "elsewhere" / "pod.yaml", PRIVILEGED_POD)
    (d / "in").mkdir()
    (d / "in" / "linked").symlink_to(d / "elsewhere", target_is_directory=True)
    return Run([str(d / "in")])


def _symlink_loop(d: pathlib.Path) -> Run:
    _write(d / "in" / "sub" / "pod.yaml", PRIVILEGED_POD)
    (d / "in" / "sub" / "loop").symlink_to(d / "in", target_is_directory=True)
    (d / "in" / "self").symlink_to(".", target_is_directory=True)
    return Run([str(d / "in")])


def _fifo_given(d: pathlib.Path) -> Run:
    os.mkfifo(d / "fifo.yaml")
    return Run([str(d / "fifo.yaml")])


def _fifo_in_dir(d: pathlib.Path) -> Run:
    _write(d / "in" / "pod.yaml", PRIVILEGED_POD)
    os.mkfifo(d / "in" / "fifo.yaml")
    return Run([str(d / "in")])


def _dev_zero(d: pathlib.Path) -> Run:
    return Run(["/dev/zero"])


def _dev_urandom(d: pathlib.Path) -> Run:
    return Run(["/dev/urandom"])


def _size_cap(d: pathlib.Path) -> Run:
    big = PRIVILEGED_POD + "# " + "x" * 4096 + "\n"
    return Run(["--max-file-size", "1Ki", str(_write(d / "big.yaml", big))])


def _huge_jobs(d: pathlib.Path) -> Run:
    for i in range(300):
        _write(d / "in" / f"{i:03}.yaml", PRIVILEGED_POD)
    return Run(["-j", "100000", str(d / "in")])


def _output_dev_full(d: pathlib.Path) -> Run:
    return Run(["-o", "/dev/full", str(_write(d / "pod.yaml", PRIVILEGED_POD))])


def _stdout_full(d: pathlib.Path) -> Run:
    return Run([str(_write(d / "pod.yaml", PRIVILEGED_POD))], stdout="/dev/full")


def _stdout_closed(d: pathlib.Path) -> Run:
    return Run([str(_write(d / "pod.yaml", PRIVILEGED_POD))], stdout="closed")


def _stdout_broken_pipe(d: pathlib.Path) -> Run:
    return Run(
        ["--format", "json", str(_write(d / "pod.yaml", PRIVILEGED_POD))], stdout="broken-pipe"
    )


def _stdin_closed(d: pathlib.Path) -> Run:
    return Run(["-"], stdin=None)


def _non_utf8_name(d: pathlib.Path) -> Run:
    name = os.fsencode(str(d)) + b"/bad-\xff\xfe.yaml"
    with open(name, "wb") as f:
        f.write(PRIVILEGED_POD.encode())
    return Run(["--format", "sarif", str(d)])


def _policy(spec: str) -> str:
    return (
        "apiVersion: kube-guardrails.io/v1alpha1\nkind: GuardrailPolicy\n"
        f"metadata: {{name: p}}\nspec:\n{spec}"
    )


def _policy_huge_quantity(d: pathlib.Path) -> Run:
    policy = _policy(
        "  hardening:\n    limitRange:\n      enabled: true\n"
        "      defaultRequest: {cpu: '1e999999999'}\n"
    )
    pod = _write(d / "pod.yaml", PRIVILEGED_POD)
    return Run(["--policy", str(_write(d / "p.yaml", policy)), str(pod)])


def _policy_year_one(d: pathlib.Path) -> Run:
    policy = _policy(
        "  workloads:\n    exemptions:\n    - namespaces: [shop]\n      checks: [privileged]\n"
        "      reason: test\n      expires: '0001-01-01T00:00:00+01:00'\n"
    )
    pod = _write(d / "pod.yaml", PRIVILEGED_POD)
    return Run(["--policy", str(_write(d / "p.yaml", policy)), str(pod)])


def _string_privileged(d: pathlib.Path) -> Run:
    text = PRIVILEGED_POD.replace("privileged: true", 'privileged: "true"')
    return Run([str(_write(d / "s.yaml", text))])


def _string_host_network(d: pathlib.Path) -> Run:
    text = PRIVILEGED_POD.replace("spec:\n", 'spec:\n  hostNetwork: "true"\n').replace(
        "privileged: true", "privileged: false"
    )
    return Run([str(_write(d / "s.yaml", text))])


def _string_run_as_user(d: pathlib.Path) -> Run:
    text = PRIVILEGED_POD.replace("privileged: true", 'runAsUser: "0"')
    return Run(["--level", "restricted", str(_write(d / "s.yaml", text))])


def _duplicate_key(d: pathlib.Path) -> Run:
    text = PRIVILEGED_POD.replace(
        "securityContext: {privileged: true}",
        "securityContext:\n      privileged: true\n      privileged: false",
    )
    return Run([str(_write(d / "dup.yaml", text))])


def _empty_file(d: pathlib.Path) -> Run:
    return Run([str(_write(d / "empty.yaml", "# nothing\n---\n"))])


def _empty_stdin(d: pathlib.Path) -> Run:
    return Run(["-"], stdin=b"")


def _empty_allowed(d: pathlib.Path) -> Run:
    return Run(["--allow-empty", "-"], stdin=b"")


def _nan_quantity(d: pathlib.Path) -> Run:
    text = PRIVILEGED_POD + "    resources: {requests: {cpu: .nan, memory: .inf}}\n"
    return Run([str(_write(d / "nan.yaml", text))])


# --------------------------------------------------------------- second round (issue 10+)

# A Pod with no finding under the default policy: a document that is checked passes, so
# a privileged Pod hidden behind it is seen only if it is read.
CLEAN_POD = """\
apiVersion: v1
kind: Pod
metadata: {name: clean, namespace: shop}
spec:
  containers:
  - name: app
    image: registry.example.com/app:1.0
    resources: {requests: {cpu: 100m, memory: 64Mi}, limits: {memory: 64Mi}}
    livenessProbe: {httpGet: {path: /, port: 80}}
    readinessProbe: {httpGet: {path: /, port: 80}}
    securityContext: {readOnlyRootFilesystem: true}
"""


def _cr_line_ends(d: pathlib.Path) -> Run:
    text = (CLEAN_POD + "---\n" + PRIVILEGED_POD).replace("\n", "\r")
    return Run([str(_write(d / "cr.yaml", text))])


def _cr_comment_first(d: pathlib.Path) -> Run:
    _write(d / "in" / "a.yaml", CLEAN_POD)
    _write(d / "in" / "b.yaml", ("# header\n" + PRIVILEGED_POD).replace("\n", "\r"))
    return Run([str(d / "in")])


def _unicode_separator(d: pathlib.Path) -> Run:
    return Run([str(_write(d / "ls.yaml", CLEAN_POD + "\u2028---\u2028" + PRIVILEGED_POD))])


def _binary_kind(d: pathlib.Path) -> Run:
    text = PRIVILEGED_POD.replace("kind: Pod", "kind: !!binary UG9k")  # "Pod"
    return Run([str(_write(d / "bk.yaml", text))])


def _binary_key(d: pathlib.Path) -> Run:
    text = PRIVILEGED_POD.replace(
        "securityContext: {privileged: true}",
        "securityContext:\n      ? !!binary cHJpdmlsZWdlZA==\n      : true",  # "privileged"
    )
    return Run([str(_write(d / "bkey.yaml", text))])


def _timestamp_label(d: pathlib.Path) -> Run:
    text = PRIVILEGED_POD.replace("namespace: shop}", "namespace: shop, labels: {day: 2026-11-29}}")
    return Run([str(_write(d / "ts.yaml", text))])


def _json_in_dir(d: pathlib.Path) -> Run:
    _write(d / "in" / "clean.yaml", CLEAN_POD)
    pod = (
        '{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "priv", "namespace": "shop"},'
        ' "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:1.0",'
        ' "securityContext": {"privileged": true}}]}}'
    )
    _write(d / "in" / "evil.json", pod)  # kubectl apply -f in/ applies it
    return Run([str(d / "in")])


def _unlistable_dir(d: pathlib.Path) -> Run:
    # A directory os.walk cannot list (here: its path is longer than PATH_MAX; chmod 000
    # as a non-root user fails the same way) was skipped without a word.
    _write(d / "in" / "clean.yaml", CLEAN_POD)
    fd = os.open(d / "in", os.O_RDONLY)
    for i in range(18):  # 18 x 242 characters > 4096
        name = f"{i:02}" + "d" * 240
        os.mkdir(name, dir_fd=fd)
        inner = os.open(name, os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = inner
    out = os.open("pod.yaml", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.write(out, PRIVILEGED_POD.encode())
    os.close(out)
    os.close(fd)
    return Run([str(d / "in")])


def _huge_max_file_size(d: pathlib.Path) -> Run:
    return Run(["--max-file-size", "1E", str(_write(d / "pod.yaml", PRIVILEGED_POD))])


def _huge_max_file_size_stdin(d: pathlib.Path) -> Run:
    return Run(["--max-file-size", "8Gi", "-"], stdin=PRIVILEGED_POD.encode())


def _policy_and_manifests_on_stdin(d: pathlib.Path) -> Run:
    return Run(["--policy", "-", "-"], stdin=_policy("  mode: Audit\n").encode())


def _policy_control_chars(d: pathlib.Path) -> Run:
    policy = _policy(f'  "{_EVIL}": 1\n')
    name = _write(d / "p\x1b[2J\rPASS.yaml", policy)
    return Run(["--policy", str(name), str(_write(d / "pod.yaml", PRIVILEGED_POD))])


def _output_is_input(d: pathlib.Path) -> Run:
    pod = _write(d / "pod.yaml", PRIVILEGED_POD)
    return Run(["--format", "json", "-o", str(pod), str(pod)])


def _many_bad_documents(d: pathlib.Path) -> Run:
    # 20,000 refused documents: each was kept (and printed) as an error of its own; a
    # 32 MB file of them took 783 MB. Now 100 per file and one line for the rest.
    return Run([str(_write(d / "bad.yaml", "kind: Pod\n---\n" * 20_000 + PRIVILEGED_POD))])


def _many_unique_kinds(d: pathlib.Path) -> Run:
    text = "".join(f"kind: K{i}\n---\n" for i in range(20_000)) + PRIVILEGED_POD
    return Run([str(_write(d / "kinds.yaml", text))])


def _merge_after_explicit(d: pathlib.Path) -> Run:
    # kubectl's YAML reader (go-yaml v2) applies "<<" in order: privileged is true in the
    # cluster; the spec (and PyYAML, kustomize) keep the explicit false.
    text = PRIVILEGED_POD.replace(
        "securityContext: {privileged: true}",
        "securityContext:\n      privileged: false\n      <<: {privileged: true}",
    )
    return Run([str(_write(d / "merge.yaml", text))])


def _policy_name_control_chars(d: pathlib.Path) -> Run:
    policy = _policy("  mode: Audit\n").replace("name: p}", f'name: "p{_EVIL}"}}')
    pod = _write(d / "pod.yaml", PRIVILEGED_POD)
    return Run(["--policy", str(_write(d / "p.yaml", policy)), str(pod)])


NO_TRACE = "Traceback"

CASES: list[Case] = [
    Case(
        "alias-bomb-labels",
        "alias bomb in metadata.labels (627 B)",
        _bomb_in_labels,
        2,
        stderr=(),
        stdout=("excessive aliasing", "bomb.yaml document 1", "privileged"),
    ),
    Case(
        "alias-bomb-capabilities",
        "alias bomb in capabilities.add",
        _bomb_in_capabilities,
        2,
        stdout=("excessive aliasing", "caps.yaml document 1"),
    ),
    Case(
        "aliases-200k-privileged",
        "200k aliases to a privileged container (1.4 MB)",
        _many_aliases_to_privileged,
        2,
        stdout=("excessive aliasing",),
    ),
    Case(
        "alias-bomb-policy",
        "alias bomb in a --policy file's annotations",
        _bomb_in_policy,
        2,
        stderr=("bad --policy", "excessive aliasing", "policy.yaml document 1"),
    ),
    Case(
        "deep-label-995",
        "label value nested 995 deep",
        _deep_label,
        2,
        stdout=("nesting deeper than", "deep.yaml document 1", "privileged", "Pod shop/priv"),
    ),
    Case(
        "deep-label-parallel",
        "nested 5000 deep among 300 files, -j 2",
        _deep_label_parallel,
        2,
        stdout=("nesting", "150-deep.yaml document 1", "Checked 300 workload(s)"),
    ),
    Case(
        "deep-block-nesting",
        "mappings nested 3000 deep, block style",
        _deep_block_nesting,
        2,
        stdout=("nesting deeper than 200", "block.yaml document 1", "Pod shop/priv"),
    ),
    Case(
        "nested-label-under-limit",
        "label value nested 150 deep (under the limit)",
        _nested_under_limit,
        2,
        stdout=("metadata.labels", "must map a string to a string"),
    ),
    Case(
        "slow-quantity-20k",
        "cpu: '111...1x' (20k characters)",
        _slow_quantity,
        1,
        stdout=("not a Kubernetes quantity", "(20003 characters)", "privileged"),
    ),
    Case(
        "slow-quantities-36k",
        "a 36 KB manifest of such quantities",
        _many_slow_quantities,
        1,
        stdout=("not a Kubernetes quantity",),
    ),
    Case("long-image", "a 200k-character image reference", _long_image, 1, stdout=("privileged",)),
    Case(
        "control-chars-table",
        "ESC, BEL, CR, NUL in names, images, volumes, capabilities",
        _control_chars,
        1,
        stdout=("\\x1b]52", "\\x07", "\\r", "\\x00", "\\u202e"),
    ),
    Case(
        "control-chars-json", "the same with --format json", _control_chars_json, 1, valid_json=True
    ),
    Case(
        "control-chars-sarif",
        "the same with --format sarif",
        _control_chars_sarif,
        1,
        valid_json=True,
    ),
    Case("pod-list", "kind: PodList", _pod_list, 1, stdout=("privileged", "items[0]")),
    Case(
        "nested-list",
        "a List inside a List",
        _nested_list,
        1,
        stdout=("privileged", "items[0].items[0]"),
    ),
    Case(
        "deployment-list", "kind: DeploymentList", _deployment_list, 1, stdout=("hostNamespaces",)
    ),
    Case(
        "symlinked-dir",
        "a symlinked subdirectory",
        _symlinked_dir,
        1,
        stdout=("privileged", "Checked 1 workload(s)"),
    ),
    Case(
        "symlink-loop",
        "a directory symlink loop",
        _symlink_loop,
        1,
        stdout=("Checked 1 workload(s)",),
    ),
    Case("fifo-given", "a FIFO given by name", _fifo_given, 2, stdout=("not a regular file",)),
    Case(
        "fifo-in-dir",
        "a FIFO found in a directory",
        _fifo_in_dir,
        1,
        stdout=("Checked 1 workload(s) from 1 document(s) in 1 file(s)",),
    ),
    Case("dev-zero", "/dev/zero", _dev_zero, 2, stdout=("not a regular file",)),
    Case("dev-urandom", "/dev/urandom", _dev_urandom, 2, stdout=("not a regular file",)),
    Case(
        "size-cap", "a file above --max-file-size", _size_cap, 2, stdout=("larger than 1024 bytes",)
    ),
    Case(
        "jobs-100000", "-j 100000 on 300 files", _huge_jobs, 1, stdout=("Checked 300 workload(s)",)
    ),
    Case(
        "output-dev-full",
        "-o /dev/full",
        _output_dev_full,
        2,
        stderr=("cannot write --output /dev/full",),
    ),
    Case("stdout-full", "stdout is /dev/full", _stdout_full, 2, stderr=("cannot write",)),
    Case("stdout-closed", "stdout closed (>&-)", _stdout_closed, 2, stderr=("cannot write",)),
    Case(
        "stdout-broken-pipe",
        "stdout a pipe nobody reads (audit ... | head)",
        _stdout_broken_pipe,
        2,
        stderr=("cannot write the report to standard output: Broken pipe",),
    ),
    Case(
        "stdin-closed",
        "stdin closed (<&-) with -",
        _stdin_closed,
        2,
        stdout=("standard input is closed",),
    ),
    Case(
        "non-utf8-name-sarif",
        "a non-UTF-8 file name with --format sarif",
        _non_utf8_name,
        1,
        valid_json=True,
    ),
    Case(
        "policy-quantity-1e999999999",
        "policy quantity '1e999999999'",
        _policy_huge_quantity,
        2,
        stderr=("bad --policy", "defaultRequest.cpu"),
    ),
    Case(
        "policy-expires-year-1",
        "exemption expires 0001-01-01T00:00:00+01:00",
        _policy_year_one,
        2,
        stderr=("bad --policy", "expires", "1970"),
    ),
    Case(
        "string-privileged",
        'privileged: "true"',
        _string_privileged,
        2,
        stdout=("securityContext.privileged: must be a boolean",),
    ),
    Case(
        "string-host-network",
        'hostNetwork: "true"',
        _string_host_network,
        2,
        stdout=("spec.hostNetwork: must be a boolean",),
    ),
    Case(
        "string-run-as-user",
        'runAsUser: "0"',
        _string_run_as_user,
        2,
        stdout=("securityContext.runAsUser: must be an integer",),
    ),
    Case(
        "duplicate-key",
        "duplicate mapping keys",
        _duplicate_key,
        2,
        stdout=("duplicate key 'privileged'",),
    ),
    Case(
        "empty-file",
        "an input with no document",
        _empty_file,
        2,
        stderr=("no YAML document in the input",),
    ),
    Case(
        "empty-stdin",
        "an empty stdin (a failed kustomize build | audit -)",
        _empty_stdin,
        2,
        stderr=("no YAML document in the input",),
    ),
    Case("empty-allowed", "--allow-empty", _empty_allowed, 0),
    Case(
        "nan-quantity",
        "cpu: .nan, memory: .inf",
        _nan_quantity,
        1,
        stdout=("sets cpu request nan, which is not a Kubernetes quantity",),
    ),
    Case(
        "cr-line-ends",
        "CR-only line ends: a second document after '\\r---\\r' (was exit 0)",
        _cr_line_ends,
        1,
        stdout=("Pod shop/priv", "privileged", "from 2 document(s)"),
    ),
    Case(
        "cr-comment-first",
        "CR-only file starting with a comment (was skipped as empty, exit 0)",
        _cr_comment_first,
        1,
        stdout=("Pod shop/priv", "privileged", "from 2 document(s)"),
    ),
    Case(
        "unicode-line-separator",
        "documents separated by U+2028 lines (was exit 0)",
        _unicode_separator,
        1,
        stdout=("Pod shop/priv", "privileged", "from 2 document(s)"),
    ),
    Case(
        "binary-kind",
        "kind: !!binary UG9k, a Pod to kubectl (was ignored, exit 0)",
        _binary_kind,
        1,
        stdout=("Pod shop/priv", "privileged"),
    ),
    Case(
        "binary-key",
        "? !!binary cHJpdmlsZWdlZA== : true (was privileged unseen)",
        _binary_key,
        1,
        stdout=("privileged: true",),
    ),
    Case(
        "timestamp-label",
        "label value 2026-11-29, a string to kubectl (was an input error)",
        _timestamp_label,
        1,
        stdout=("privileged",),
    ),
    Case(
        "json-in-directory",
        "a privileged Pod in a .json file kubectl apply -f DIR reads (was exit 0)",
        _json_in_dir,
        1,
        stdout=("evil.json document 1", "privileged"),
    ),
    Case(
        "unlistable-directory",
        "a directory that cannot be listed (was skipped, exit 0)",
        _unlistable_dir,
        2,
        stdout=("cannot read the directory",),
    ),
    Case(
        "max-file-size-1E",
        "--max-file-size 1E on a small file (was 'out of memory', exit 2)",
        _huge_max_file_size,
        1,
        stdout=("privileged",),
    ),
    Case(
        "max-file-size-8Gi-stdin",
        "--max-file-size 8Gi reading stdin (was 'out of memory', exit 2)",
        _huge_max_file_size_stdin,
        1,
        stdout=("privileged",),
    ),
    Case(
        "stdin-twice",
        "--policy - and PATH - (was 'no YAML document')",
        _policy_and_manifests_on_stdin,
        2,
        stderr=("standard input (-) can be read only once",),
    ),
    Case(
        "policy-control-chars",
        "ESC and CR in a policy file's name and field (were raw on stderr)",
        _policy_control_chars,
        2,
        stderr=("bad --policy", "\\x1b[2J\\rPASS.yaml", "spec.\\x1b]52"),
    ),
    Case(
        "output-is-input",
        "-o naming the manifest audited (was overwritten with the report)",
        _output_is_input,
        2,
        stderr=("would overwrite it",),
    ),
    Case(
        "merge-overrides-explicit",
        "privileged: false then <<: {privileged: true} (true to kubectl; was unseen)",
        _merge_after_explicit,
        2,
        stdout=("merge.yaml document 1", "YAML readers disagree"),
    ),
    Case(
        "policy-name-control-chars",
        "a policy named 'p<ESC>]52...' (accepted; the API server refuses such a name)",
        _policy_name_control_chars,
        2,
        stderr=("bad --policy", "metadata.name", "is not a valid name"),
    ),
    Case(
        "many-bad-documents",
        "20,000 refused documents in one file (every error kept and printed)",
        _many_bad_documents,
        2,
        stdout=("19900 more error(s) in this file, not listed", "101 input error(s)", "priv"),
    ),
    Case(
        "many-unique-kinds",
        "20,000 distinct kinds in one file (every kind kept, one huge line)",
        _many_unique_kinds,
        1,
        stdout=("<other kinds> 19900", "privileged"),
    ),
]


@dataclasses.dataclass(frozen=True)
class Outcome:
    exit: int  # negative: killed by that signal; TIMEOUT: killed at the wall-clock limit
    stdout: str
    stderr: str
    seconds: float
    max_rss_kib: int  # the child's peak resident set (its largest worker's, if any)


TIMEOUT = -1000


def execute(
    case: Case,
    directory: pathlib.Path,
    *,
    python: str,
    pythonpath: str | None = None,
    cpu_seconds: int = 30,
    memory_bytes: int = 1024**3,
    timeout: float = 60.0,
) -> Outcome:
    """Run the case's CLI in a child with CPU and address-space limits and a timeout."""
    import resource
    import signal
    import subprocess
    import tempfile
    import time

    run = case.build(directory)

    def limits() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        os.setsid()  # its own process group: a timeout kills the workers too
        if run.stdin is None:
            os.close(0)
        if run.stdout == "closed":
            os.close(1)

    env = dict(os.environ, NO_COLOR="1")
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        stdout_target: object = out
        pipe_writer = None
        if run.stdout == "/dev/full":
            stdout_target = open("/dev/full", "wb")  # noqa: SIM115
        elif run.stdout == "broken-pipe":
            reader, pipe_writer = os.pipe()
            os.close(reader)  # nobody will ever read: every write fails with EPIPE
            stdout_target = pipe_writer
        elif run.stdout == "closed":
            stdout_target = subprocess.DEVNULL
        start = time.monotonic()
        proc = subprocess.Popen(
            [python, "-m", "kube_guardrails", "audit", *run.args],
            stdin=subprocess.PIPE if run.stdin is not None else subprocess.DEVNULL,
            stdout=stdout_target,  # type: ignore[arg-type]
            stderr=err,
            cwd=directory,
            env=env,
            preexec_fn=limits,  # the limits must apply before exec
        )
        if run.stdin is not None and proc.stdin is not None:
            try:
                proc.stdin.write(run.stdin)
                proc.stdin.close()
            except BrokenPipeError:
                pass
        deadline = start + timeout
        status = None
        rusage = None
        while status is None:
            pid, status_raw, rusage_now = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                status, rusage = status_raw, rusage_now
                break
            if time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                _, status_raw, rusage = os.wait4(proc.pid, 0)
                status = None
                break
            time.sleep(0.02)
        seconds = time.monotonic() - start
        proc.returncode = 0  # reaped by wait4 above; keep Popen from waiting again
        if pipe_writer is not None:
            os.close(pipe_writer)
        elif stdout_target not in (out, subprocess.DEVNULL):
            stdout_target.close()  # type: ignore[attr-defined]
        code = TIMEOUT if status is None else os.waitstatus_to_exitcode(status)
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        out.seek(0)
        err.seek(0)
        return Outcome(
            exit=code,
            stdout=out.read().decode("utf-8", "replace"),
            stderr=err.read().decode("utf-8", "replace"),
            seconds=seconds,
            max_rss_kib=max(rusage.ru_maxrss if rusage else 0, 0) or children,
        )
