"""Typed reads from parsed JSON/TOML with one-line errors naming the document and the key."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from edgefair.contracts.errors import ContractError

T = TypeVar("T")
_MISSING: Any = object()

_KIND = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list",
         dict: "an object"}


class Fields:
    """``Fields(doc, where="artifacts/x/manifest.json", section="input")`` then ``f.integer("size")``.

    Every accessor raises ``error_type(f"{where}: {section}.{key} ...")`` on a missing key or a
    wrong type; ``default`` makes a key optional.
    """

    def __init__(self, doc: Any, *, where: str, section: str = "",
                 error_type: type[ContractError] = ContractError) -> None:
        self.where, self.section, self.error_type = where, section, error_type
        if not isinstance(doc, Mapping):
            raise self.error(f"{self.label('') or 'the document'} must be an object, got {type(doc).__name__}")
        self.doc = doc

    def label(self, key: str) -> str:
        return ".".join(p for p in (self.section, key) if p)

    def error(self, problem: str) -> ContractError:
        return self.error_type(f"{self.where}: {problem}")

    def has(self, key: str) -> bool:
        return key in self.doc and self.doc[key] is not None

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        if key not in self.doc:
            if default is _MISSING:
                raise self.error(f"{self.label(key)} is missing")
            return default
        return self.doc[key]

    def _typed(self, key: str, kind: type, default: Any, nullable: bool) -> Any:
        value = self.raw(key, default)
        if value is None and (nullable or default is None):
            return None
        if value is default and default is not _MISSING:
            return value
        ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not ok:
            raise self.error(f"{self.label(key)} must be {_KIND[kind]}, got {value!r}")
        return value

    def integer(self, key: str, default: Any = _MISSING, *, nullable: bool = False, minimum: int | None = None) -> Any:
        value = self._typed(key, int, default, nullable)
        if value is not None and minimum is not None and value < minimum:
            raise self.error(f"{self.label(key)} must be >= {minimum}, got {value}")
        return value

    def number(self, key: str, default: Any = _MISSING, *, nullable: bool = False,
              within: tuple[float, float] | None = None, positive: bool = False) -> Any:
        value = self._typed(key, float, default, nullable)
        if value is None:
            return None
        if value != value or value in (float("inf"), float("-inf")):
            raise self.error(f"{self.label(key)} must be a finite number, got {value!r}")
        if within is not None and not within[0] <= value <= within[1]:
            raise self.error(f"{self.label(key)} must be in [{within[0]:g}, {within[1]:g}], got {value:g}")
        if positive and value <= 0:
            raise self.error(f"{self.label(key)} must be > 0, got {value:g}")
        return value

    def text(self, key: str, default: Any = _MISSING, *, nullable: bool = False,
            choices: tuple[str, ...] | None = None) -> Any:
        value = self._typed(key, str, default, nullable)
        if value is not None and choices is not None and value not in choices:
            raise self.error(f"{self.label(key)} is {value!r}; expected one of {', '.join(choices)}")
        return value

    def flag(self, key: str, default: Any = _MISSING) -> Any:
        return self._typed(key, bool, default, False)

    def array(self, key: str, default: Any = _MISSING, *, nullable: bool = False) -> Any:
        return self._typed(key, list, default, nullable)

    def mapping(self, key: str, default: Any = _MISSING, *, nullable: bool = False) -> Any:
        return self._typed(key, dict, default, nullable)

    def sub(self, key: str, *, nullable: bool = False) -> Fields | None:
        """The object at ``key`` as Fields (None when nullable and null)."""
        value = self.raw(key)
        if value is None and nullable:
            return None
        return Fields(value, where=self.where, section=self.label(key), error_type=self.error_type)

    def parse(self, key: str, parser: Callable[[Fields], T], *, nullable: bool = False) -> T | None:
        sub = self.sub(key, nullable=nullable)
        return None if sub is None else parser(sub)

    def strings(self, key: str, default: Any = _MISSING) -> list[str]:
        values = self.array(key, default)
        if values is None:
            return []
        bad = [v for v in values if not isinstance(v, str)]
        if bad:
            raise self.error(f"{self.label(key)} must hold strings, got {bad[0]!r}")
        return list(values)

    def ints(self, key: str) -> list[int]:
        values = self.array(key)
        bad = [v for v in values if not isinstance(v, int) or isinstance(v, bool)]
        if bad:
            raise self.error(f"{self.label(key)} must hold integers, got {bad[0]!r}")
        return list(values)
