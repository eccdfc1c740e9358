"""Field checks shared by the filters that load hand-written YAML (shoplab_exercises, shoplab_drills).

A spec maps a field's name to `(type, required, ...)`: the type is a class or a tuple of classes,
`required` a bool; what follows is the caller's own (the drills' bounds and descriptions). A wrong
field raises the caller's error class, with `where` and the field named.

Not a filter itself: the filters import it as a sibling module (Ansible loads filter plugins by path,
not as a package; see shoplab_exercises.py), and its empty FilterModule keeps Ansible's plugin loader,
which reads every *.py file of plugins/filter, from warning that it skipped an invalid plugin.
"""

from __future__ import annotations

TYPE_NAMES = {
    int: "a whole number",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "a mapping",
    bool: "true or false",
}


def type_name(kind) -> str:
    """How a message names `kind` (a class or a tuple of classes): "a whole number or a number"."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(TYPE_NAMES.get(k, k.__name__) for k in kinds)


def is_kind(value, kind) -> bool:
    """Whether `value` is of `kind`; a bool only where `kind` names bool."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # YAML's true/false are ints to Python: never accept them as numbers.
    return isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)


def check_fields(where: str, data, spec: dict, error: type[Exception]) -> None:
    """`data` is a mapping with no field `spec` does not know, every required one, each of its type;
    otherwise `error` naming `where` and the first wrong field."""
    if not isinstance(data, dict):
        raise error(f"{where}: must be a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - set(spec))
    if unknown:
        raise error(f"{where}.{unknown[0]}: unknown field (known: {', '.join(sorted(spec))})")
    for field, (kind, required, *_) in spec.items():
        if field not in data:
            if required:
                raise error(f"{where}.{field}: missing")
            continue
        if not is_kind(data[field], kind):
            raise error(f"{where}.{field}: must be {type_name(kind)}, got {data[field]!r}")


class FilterModule:
    """No filters: see the module's docstring."""

    def filters(self):
        return {}
