"""Typed, key-checked reading of a TOML table: the error wording every design error shares.

Each reader names the file, the key's full path and the fix, e.g.
``studies/demo.toml: cases.ai_wrong_share must be a number from 0 to 1, got 1.5``; `done()`
refuses keys that were never read (a misspelt key silently ignored would change the experiment).
Hand-written rather than pydantic: pydantic's errors are multi-line, name no file and no fix, and
mapping them back to one line per key would take as much code as these readers (docs/studies.md).
"""

from __future__ import annotations

import re
from typing import Any

from xai_lab.errors import ConfigError


class TomlTable:
    """Typed access to one TOML table that remembers which keys were read."""

    def __init__(self, raw: Any, source: str, prefix: str) -> None:
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: {prefix.rstrip('.') or 'the file'} must be a table, got {type(raw).__name__}")
        self.raw, self.source, self.prefix, self.read = raw, source, prefix, set()

    def fail(self, key: str, problem: str) -> None:
        raise ConfigError(f"{self.source}: {self.prefix}{key} {problem}")

    def raw_value(self, key: str, default: Any, kind: str) -> Any:
        """The value as written (or the default); the typed readers below check it."""
        self.read.add(key)
        if key not in self.raw:
            if default is REQUIRED:
                self.fail(key, f"is missing; add it ({kind})")
            return default
        return self.raw[key]

    def string(self, key: str, default: Any = None, allow_empty: bool = False) -> str:
        value = self.raw_value(key, REQUIRED if default is None else default, "a string")
        if not isinstance(value, str) or (not allow_empty and not value.strip()):
            self.fail(key, f"must be a non-empty string, got {short(value)}")
        return value.strip()

    def strings(self, key: str, default: Any = None) -> list[str]:
        value = self.raw_value(key, REQUIRED if default is None else default, "a list of strings")
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            self.fail(key, f"must be a list of non-empty strings, got {short(value)}")
        return [v.strip() for v in value]

    def integer(self, key: str, default: Any = None, low: int | None = None, high: int | None = None) -> int:
        value = self.raw_value(key, REQUIRED if default is None else default, "an integer")
        if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low) \
                or (high is not None and value > high):
            bounds = f" from {low}" if low is not None else ""
            bounds += f" to {high}" if high is not None else (" or more" if low is not None else "")
            self.fail(key, f"must be an integer{bounds}, got {short(value)}")
        return value

    def number(self, key: str, default: Any = None, low: float = 0.0, high: float = 1.0) -> float:
        value = self.raw_value(key, REQUIRED if default is None else default, "a number")
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            self.fail(key, f"must be a number from {low:g} to {high:g}, got {short(value)}")
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw_value(key, default, "true or false")
        if not isinstance(value, bool):
            self.fail(key, f"must be true or false, got {short(value)}")
        return value

    def choice(self, key: str, options: tuple[str, ...], default: Any = None) -> str:
        value = self.raw_value(key, REQUIRED if default is None else default, f"one of {', '.join(options)}")
        if value not in options:
            self.fail(key, f"must be one of {', '.join(repr(o) for o in options)}, got {short(value)}")
        return value

    def table(self, key: str, optional: bool = False) -> TomlTable | None:
        value = self.raw_value(key, None if optional else REQUIRED, "a table")
        if value is None:
            return None
        if not isinstance(value, dict):
            self.fail(key, f"must be a table ([{self.prefix}{key}]), got {type(value).__name__}")
        return TomlTable(value, self.source, f"{self.prefix}{key}.")

    def tables(self, key: str) -> list[TomlTable]:
        value = self.raw_value(key, [], "an array of tables")
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.fail(key, f"must be an array of tables ([[{self.prefix}{key}]])")
        return [TomlTable(v, self.source, f"{self.prefix}{key}[{i}].") for i, v in enumerate(value)]

    def done(self) -> None:
        unknown = sorted(set(self.raw) - self.read)
        if unknown:
            allowed = ", ".join(sorted(self.read))
            raise ConfigError(f"{self.source}: unknown key {self.prefix}{unknown[0]}; "
                              f"the keys allowed here are: {allowed} (check the spelling)")


REQUIRED = object()


_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}$")


def identifier(table: TomlTable, key: str = "id") -> str:
    """Ids become step keys and export values: 1-48 letters, digits, '_', '-', '.'."""
    value = table.string(key)
    if not _ID_PATTERN.match(value):
        table.fail(key, f"must be 1-48 letters, digits, '_', '-' or '.', starting with a letter or digit; "
                        f"got {short(value)}")
    return value


def unique_ids(table: TomlTable, key: str, ids: list[str]) -> None:
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        table.fail(key, f"repeats the id {duplicates[0]!r}; give every entry its own id")


def short(value: Any) -> str:
    """A value for an error message, cut short: a pasted list of thousands must not flood the terminal."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
