"""The one place a method spec becomes a typed, validated config.

'knn:embed=lite0:k=3' -> ('knn', {'embed': 'lite0', 'k': '3'}) -> KNNConfig(embed='lite0', k=3), every value
coerced to its field's type and checked against the constraints its field declares with `opt(...)` (ranges,
choices). A saved model's config goes through the same checks on load, and unknown keys are refused there too.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable

from ..errors import ModelError


EXPORT_KINDS = ("model", "fit")


def opt(default, *, ge=None, gt=None, le=None, lt=None, choices: Iterable[str] | Callable[[], Iterable[str]] = None,
        check: Callable[[Any], str | None] | None = None, export: str | None = None):
    """A config field with its constraints: ge/gt/le/lt bounds, `choices` (a tuple, or a callable giving one for
    lists known only at run time, e.g. the encoders) and `check(value) -> problem or None` for anything else.

    `export` says what the leaderboard export (export/leaderboard.py) does with the option: "model" (the exported
    model.py reads it), "fit" (it only shapes the fit, the index or the radius, which travel as tensors) or None
    (not reproduced: a non-default value is refused there)."""
    if export is not None and export not in EXPORT_KINDS:
        raise ValueError(f"opt(export={export!r}): must be one of {EXPORT_KINDS} or None")
    return dataclasses.field(default=default, metadata={"ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices,
                                                        "check": check, "export": export})


def export_fields(config_cls: type, *kinds: str) -> tuple[str, ...]:
    """Names of the config's fields whose `export` is one of `kinds`, in field order."""
    return tuple(f.name for f in dataclasses.fields(config_cls) if f.metadata.get("export") in kinds)


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """'knn:embed=lite0:k=3' -> ('knn', {'embed': 'lite0', 'k': '3'}). Raises ModelError on a malformed spec."""
    parts = [p for p in spec.strip().split(":")]
    name, params = parts[0].strip(), {}
    if not name:
        raise ModelError(f"empty method spec {spec!r}")
    for p in parts[1:]:
        if "=" not in p:
            raise ModelError(f"method spec {spec!r}: '{p}' is not key=value")
        k, v = p.split("=", 1)
        params[k.strip()] = v.strip()
    return name, params


def _type_of(f: dataclasses.Field) -> Any:
    t = f.type
    return {"int": int, "float": float, "bool": bool, "str": str}.get(t, t) if isinstance(t, str) else t


def coerce(value: str, typ: Any, key: str, where: str):
    """A spec string -> the field's type (bool accepts 1/0, true/false, yes/no, on/off)."""
    try:
        if typ is bool:
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        return typ(value)
    except (TypeError, ValueError):
        raise ModelError(f"{where}: {key}={value!r} is not a valid {getattr(typ, '__name__', typ)}") from None


def _problem(value, meta: dict) -> str | None:
    choices = meta.get("choices")
    if choices is not None:
        known = tuple(choices() if callable(choices) else choices)
        if value not in known:
            return f"must be one of {', '.join(map(str, known))}, not {value!r}"
    for k, ok, word in (("ge", lambda v, b: v >= b, ">="), ("gt", lambda v, b: v > b, ">"),
                        ("le", lambda v, b: v <= b, "<="), ("lt", lambda v, b: v < b, "<")):
        if meta.get(k) is not None and not ok(value, meta[k]):
            return f"must be {word} {meta[k]}, not {value!r}"
    return meta["check"](value) if meta.get("check") else None


def _type_problem(value, typ) -> str | None:
    """Whether value has the field's type (a float field takes an int; bool is never an int or a float)."""
    ok = {bool: lambda v: isinstance(v, bool), int: lambda v: isinstance(v, int) and not isinstance(v, bool),
          float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          str: lambda v: isinstance(v, str)}.get(typ)
    if ok is None or ok(value):
        return None
    return f"must be of type {typ.__name__}, not {value!r}"


def validate(config, where: str):
    """Check every field of a config dataclass: its type, and the constraints it declares with `opt` (every field
    of a method's config is declared with `opt`; tests/predictors/test_spec.py checks that). Returns the config.

    Raises ModelError '<where>: <key> must be ...' (one line) on the first violation."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        why = _type_problem(value, _type_of(f)) or (_problem(value, f.metadata) if f.metadata else None)
        if why:
            raise ModelError(f"{where}: {f.name} {why}")
    return config


def undeclared_fields(config_cls: type) -> list[str]:
    """The config's fields declared without `opt` (none should be: their values would go unchecked)."""
    return [f.name for f in dataclasses.fields(config_cls) if "choices" not in f.metadata]


def _unknown(config_cls: type, keys: Iterable[str], where: str) -> None:
    fields = [f.name for f in dataclasses.fields(config_cls)]
    unknown = sorted(set(keys) - set(fields))
    if unknown:
        raise ModelError(f"{where}: unknown option(s) {', '.join(unknown)}; known: {', '.join(fields)}")


def config_from_params(config_cls: type, params: dict[str, str], spec: str):
    """Spec parameters (strings) -> a validated config: unknown keys, bad types and out-of-range values refused."""
    where = f"method spec {spec!r}"
    _unknown(config_cls, params, where)
    types = {f.name: _type_of(f) for f in dataclasses.fields(config_cls)}
    return validate(config_cls(**{k: coerce(v, types[k], k, where) for k, v in params.items()}), where)


def config_from_saved(config_cls: type, values: dict[str, Any], where: str):
    """A saved model's config (JSON values) -> a validated config; unknown keys are refused, not dropped."""
    _unknown(config_cls, values, where)
    return validate(config_cls(**values), where)

