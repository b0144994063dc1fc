"""Design settings declared once: each field of a design section carries its `Setting` (help, bounds,
choices, TOML key, the design schema version that added it), and everything else is derived from it:

- `read_section`: the TOML reader of a section's plain settings, with the shared one-line errors of
  `design_toml` (the bounds and choices in the message are the declared ones);
- `from_record`: a section (or a whole design) from the JSON the database holds, sections and fields
  a stored design lacks taking their declared defaults;
- `without_later_defaults`: the fingerprint's view of a design - a setting added after schema 1 counts
  only when it differs from its default, so a new setting leaves every registered study's fingerprint,
  and so its participants, untouched by an upgrade;
- `markdown_reference`: the docs table of every setting (docs/studies.md carries it; a test keeps it true).

What a plain declaration cannot say (a key per arm, `block_sizes` as multiples of the number of arms,
"a - b" contrasts) stays in `design_file`'s section readers, which read the declared settings first.
"""

from __future__ import annotations

import dataclasses
import functools
import types
from dataclasses import MISSING, dataclass, is_dataclass
from typing import Any, Union, get_args, get_origin, get_type_hints

from xai_lab.study.design_toml import REQUIRED, TomlTable

SETTING = "setting"


@dataclass(frozen=True)
class Setting:
    help: str
    since: int = 1  # the design schema version that added it (`DESIGN_SCHEMA` in design.py)
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    key: str | None = None  # its TOML key, when it differs from the field name
    custom: bool = False  # read by the section's own reader in design_file (documented here all the same)


def setting(default: Any = MISSING, *, help: str, since: int = 1, low: float | None = None,
            high: float | None = None, choices: tuple[str, ...] = (), key: str | None = None,
            custom: bool = False) -> Any:
    """A dataclass field with its declaration; mutable defaults (dicts) are copied per instance."""
    metadata = {SETTING: Setting(help, since, low, high, choices, key, custom)}
    if isinstance(default, dict):
        return dataclasses.field(default_factory=lambda: dict(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def declared(cls: type) -> list[tuple[dataclasses.Field, Setting]]:
    return [(f, f.metadata[SETTING]) for f in dataclasses.fields(cls) if SETTING in f.metadata]


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    # resolved once per class: every setting read, record conversion and fingerprint asks for them
    return get_type_hints(cls)


def _plain(kind: Any) -> tuple[Any, bool]:
    """(the type, whether None is allowed) of an annotation such as `float | None`."""
    if get_origin(kind) in (Union, types.UnionType):
        args = [arg for arg in get_args(kind) if arg is not type(None)]
        return args[0], True
    return kind, False


def read_setting(table: TomlTable, cls: type, name: str, default: Any = MISSING) -> Any:
    """One declared setting read from its table: type, bounds and choices as declared."""
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    spec: Setting = field.metadata[SETTING]
    key = spec.key or name
    kind, optional = _plain(_hints(cls)[name])
    value = field.default if default is MISSING else default
    if value is MISSING and field.default_factory is not MISSING:
        value = field.default_factory()
    if optional and value is None:
        if key not in table.raw:
            table.read.add(key)
            return None
        value = REQUIRED
    missing = None if value is MISSING or value is REQUIRED else value
    if kind is bool:
        return table.boolean(key, bool(missing))
    if kind is int:
        return table.integer(key, default=missing, low=_int(spec.low), high=_int(spec.high))
    if kind is float:
        return table.number(key, default=missing, low=spec.low if spec.low is not None else 0.0,
                            high=spec.high if spec.high is not None else 1.0)
    if kind is str and spec.choices:
        return table.choice(key, spec.choices, default=missing)
    if kind is str:
        return table.string(key, default=missing)
    if get_origin(kind) is tuple and get_args(kind)[0] is str:
        return tuple(table.strings(key, default=None if missing is None else list(missing)))
    raise TypeError(f"{cls.__name__}.{name}: no reader for {kind!r}; read it in the section's own reader")


def _int(bound: float | None) -> int | None:
    return None if bound is None else int(bound)


def read_section(table: TomlTable, cls: type, **defaults: Any) -> dict[str, Any]:
    """Every declared, non-custom setting of `cls` read from `table` (keyword defaults override the
    declared ones where a present table means something else, e.g. one attention check)."""
    return {field.name: read_setting(table, cls, field.name, defaults.get(field.name, MISSING))
            for field, spec in declared(cls) if not spec.custom}


def from_record(cls: type, raw: dict[str, Any]) -> Any:
    """A dataclass from its `asdict` JSON; keys the record lacks take the declared defaults."""
    hints = _hints(cls)
    values = {f.name: _convert(hints[f.name], raw[f.name]) for f in dataclasses.fields(cls) if f.name in raw}
    return cls(**values)


def _convert(kind: Any, value: Any) -> Any:
    kind, _ = _plain(kind)
    if value is None:
        return None
    if is_dataclass(kind):
        return from_record(kind, value)
    if get_origin(kind) is tuple:
        inner = get_args(kind)[0]
        return tuple(_convert(inner, item) for item in value)
    if get_origin(kind) is dict:
        return dict(value)
    return value


def without_later_defaults(cls: type, content: dict[str, Any], schema: int = 1) -> dict[str, Any]:
    """`content` (a design's JSON) without the settings added after `schema` that keep their default,
    section by section: what a design did not say cannot have changed the experiment."""
    hints, kept = _hints(cls), {}
    for field in dataclasses.fields(cls):
        if field.name not in content:
            continue
        value = content[field.name]
        spec = field.metadata.get(SETTING)
        kind, _ = _plain(hints[field.name])
        # compared as written, before its own later settings are dropped: a whole later section (a table
        # whose every setting is later) at its default is left out, not kept as an empty table
        if spec is not None and spec.since > schema and _listed(value) == _default_json(field, kind):
            continue
        if is_dataclass(kind) and isinstance(value, dict):
            value = without_later_defaults(kind, value, schema)
        elif get_origin(kind) is tuple and is_dataclass(get_args(kind)[0]) and isinstance(value, list | tuple):
            # a table array ([[...]], [factors.NAME]): each entry drops its later defaults too
            value = [without_later_defaults(get_args(kind)[0], item, schema) for item in value]
        if spec is not None and spec.since > schema and _listed(value) == _default_json(field, kind):
            continue
        kept[field.name] = value
    return kept


def _listed(value: Any) -> Any:
    # `asdict` keeps tuples, the stored JSON has lists: compared as JSON sees them
    if isinstance(value, tuple | list):
        return [_listed(item) for item in value]
    return value


def _default_json(field: dataclasses.Field, kind: Any) -> Any:
    default = field.default_factory() if field.default_factory is not MISSING else field.default
    return dataclasses.asdict(default) if is_dataclass(default) else \
        list(default) if isinstance(default, tuple) else default


def markdown_reference(sections: dict[str, type]) -> str:
    """The docs table: one row per declared setting, with its type, default and help."""
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for prefix, cls in sections.items():
        hints = _hints(cls)
        for field, spec in declared(cls):
            key = f"{prefix}.{spec.key or field.name}" if prefix else (spec.key or field.name)
            rows.append(f"| `{key}` | {_type_words(hints[field.name], spec)} | {_default_words(field)} | "
                        f"{spec.help} |")
    return "\n".join(rows)


def _type_words(kind: Any, spec: Setting) -> str:
    plain, optional = _plain(kind)
    if spec.choices:
        words = " / ".join(f"`{c}`" for c in spec.choices)
    elif plain in (int, float):
        low = "" if spec.low is None else f"{spec.low:g}"
        high = "" if spec.high is None else f"{spec.high:g}"
        words = f"{plain.__name__} {low}-{high}" if low or high else plain.__name__
    else:
        words = getattr(plain, "__name__", None) or str(plain).replace("typing.", "")
    return words + (" (optional)" if optional else "")


def _default_words(field: dataclasses.Field) -> str:
    if field.default_factory is not MISSING:
        value = field.default_factory()
        if isinstance(value, dict):  # a per-arm table's default is decided per arm (see its help)
            return "per arm" if "per arm" in field.metadata[SETTING].help else "empty table"
        return f"`{value!r}`"
    if field.default is MISSING:
        return "required"
    if is_dataclass(field.default):
        return "see its table"
    return f"`{field.default!r}`" if field.default not in (None, "") else "none"
