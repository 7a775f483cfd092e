"""The types of the pod fields the checks decide on, as the API server enforces them.

A manifest is YAML, so ``privileged: "true"``, ``hostNetwork: "yes"`` or ``runAsUser:
"0"`` are easy to write; the API server refuses them ("cannot unmarshal string into Go
struct field ... of type bool"), but a check that asks ``value is True`` would read
them as unset and pass the workload. The operator never sees such objects (the API
server stands in front of it); the audit does, so it reports each wrong-typed field as
an input error naming the field path, and does not check that object.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

_BOOL = "a boolean (true or false)"
_INT = "an integer"
_STR = "a string"
_LIST = "a list"
_MAP = "a mapping"

# Field -> expected type, for the fields a check reads.
_POD_FIELDS: dict[str, str] = {
    "hostNetwork": _BOOL,
    "hostPID": _BOOL,
    "hostIPC": _BOOL,
    "hostUsers": _BOOL,
    "shareProcessNamespace": _BOOL,
    "securityContext": _MAP,
    "containers": _LIST,
    "initContainers": _LIST,
    "ephemeralContainers": _LIST,
    "volumes": _LIST,
    "os": _MAP,
}
_SECURITY_CONTEXT: dict[str, str] = {
    "privileged": _BOOL,
    "allowPrivilegeEscalation": _BOOL,
    "readOnlyRootFilesystem": _BOOL,
    "runAsNonRoot": _BOOL,
    "runAsUser": _INT,
    "runAsGroup": _INT,
    "fsGroup": _INT,
    "procMount": _STR,
    "capabilities": _MAP,
    "seccompProfile": _MAP,
    "appArmorProfile": _MAP,
    "seLinuxOptions": _MAP,
    "windowsOptions": _MAP,
    "sysctls": _LIST,
    "supplementalGroups": _LIST,
}
_CONTAINER: dict[str, str] = {
    "name": _STR,
    "image": _STR,
    "securityContext": _MAP,
    "ports": _LIST,
    "resources": _MAP,
}


def problems(spec: Mapping[str, Any], *, spec_path: str) -> Iterator[str]:
    """Every wrong-typed field under a pod spec, as "path: must be ..., not ..."."""
    yield from _fields(spec, _POD_FIELDS, spec_path)
    yield from _security_context(spec.get("securityContext"), f"{spec_path}.securityContext")
    for group in ("containers", "initContainers", "ephemeralContainers"):
        containers = spec.get(group)
        if not isinstance(containers, list):
            continue
        for i, c in enumerate(containers):
            where = f"{spec_path}.{group}[{i}]"
            if not isinstance(c, Mapping):
                yield f"{where}: must be {_MAP}, not {_describe(c)}"
                continue
            yield from _fields(c, _CONTAINER, where)
            yield from _security_context(c.get("securityContext"), f"{where}.securityContext")
            ports = c.get("ports")
            if isinstance(ports, list):
                for j, port in enumerate(ports):
                    if isinstance(port, Mapping):
                        yield from _fields(
                            port, {"hostPort": _INT, "containerPort": _INT}, f"{where}.ports[{j}]"
                        )


def labels(value: object, *, where: str) -> Iterator[str]:
    """``metadata.labels`` must map strings to strings (exemption selectors match them)."""
    if value is None:
        return
    if not isinstance(value, Mapping):
        yield f"{where}: must be {_MAP}, not {_describe(value)} (the API server refuses it)"
        return
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, str):
            yield (
                f"{where}: label {_describe(k)} must map a string to a string, not to "
                f"{_describe(v)} (the API server refuses it; quote numbers and booleans)"
            )


def _security_context(sc: object, where: str) -> Iterator[str]:
    if not isinstance(sc, Mapping):
        return
    yield from _fields(sc, _SECURITY_CONTEXT, where)
    caps = sc.get("capabilities")
    if isinstance(caps, Mapping):
        yield from _fields(caps, {"add": _LIST, "drop": _LIST}, f"{where}.capabilities")
        for key in ("add", "drop"):
            values = caps.get(key)
            if isinstance(values, list):
                for i, v in enumerate(values):
                    if not isinstance(v, str):
                        yield f"{where}.capabilities.{key}[{i}]: must be {_STR}, not {_describe(v)}"
    windows = sc.get("windowsOptions")
    if isinstance(windows, Mapping):
        yield from _fields(windows, {"hostProcess": _BOOL}, f"{where}.windowsOptions")


def _fields(obj: Mapping[str, Any], expected: Mapping[str, str], where: str) -> Iterator[str]:
    for field, want in expected.items():
        value = obj.get(field)
        if value is None or _is(value, want):
            continue  # unset (or null, which the API server reads as unset)
        yield f"{where}.{field}: must be {want}, not {_describe(value)} (the API server refuses it)"


def _is(value: object, want: str) -> bool:
    if want == _BOOL:
        return isinstance(value, bool)
    if want == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if want == _STR:
        return isinstance(value, str)
    if want == _LIST:
        return isinstance(value, list)
    return isinstance(value, Mapping)


def _describe(value: object) -> str:
    if isinstance(value, str):
        text = repr(value)
        return f"the string {text if len(text) <= 40 else text[:37] + '...'}"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value!r}"[:60]
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return type(value).__name__
