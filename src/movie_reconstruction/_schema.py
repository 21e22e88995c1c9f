"""How a setting describes itself (a leaf module): help text, unit, range, choices and the
command-line flag live beside the field's default, in the dataclass that holds it.

The command line's options (:mod:`movie_reconstruction.cli_options`), the napari widgets'
advanced sections and the settings table of docs/settings.md are all made from these
descriptions, so that a setting is described once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

STAGES = ("extract", "build", "train", "reconstruct", "controls", "run")
NONE_WORDS = ("none", "off")  # what None is written as


@dataclass(frozen=True)
class SettingInfo:
    name: str  # the field's name (a nested field: "reconstruction.learning_rate")
    default: Any
    help: str
    stage: str
    kind: type  # what one value is: bool, int, float or str (tuples hold several)
    unit: str = ""
    low: float | None = None
    high: float | None = None
    choices: tuple = ()
    flag: str = ""  # the command-line option; "" = from the name
    several: bool = False  # a tuple of values (comma-separated on the command line)
    optional: bool = False  # None is allowed (and means what the help says)
    advanced: bool = False  # shown under "advanced" in the widgets

    @property
    def option(self) -> str:
        return self.flag or "--" + self.name.rpartition(".")[2].replace("_", "-")

    def describe(self) -> str:
        """The help text with the unit, range and default, as the command line and docs show it."""
        parts = [self.help]
        if self.unit:
            parts.append(f"unit: {self.unit}")
        if self.low is not None or self.high is not None:
            parts.append(f"range {_number(self.low) if self.low is not None else '...'} to "
                         f"{_number(self.high) if self.high is not None else '...'}")
        parts.append(f"default {format_value(self.default)}")
        return "; ".join(parts)

    def parse(self, text: str):
        """The value ``text`` stands for, as the command line and the widgets' text fields write it:
        comma-separated for several values, "none" (or "off") for None where that is allowed.
        :class:`ValueError` when it does not read as the setting's kind."""
        if self.optional and text.strip().lower() in NONE_WORDS:
            return None
        if self.several:
            return tuple(self.kind(v.strip()) for v in text.split(",") if v.strip())
        return self.kind(text)

    def check(self, value) -> None:
        """ValueError naming the setting when ``value`` is out of its range or choices."""
        if value is None:
            if not self.optional:
                raise ValueError(f"{self.name} needs a value")
            return
        values = value if self.several else (value,)
        for v in values:
            if self.choices and v not in self.choices:
                raise ValueError(f"{self.name} must be one of {list(self.choices)}, got {v!r}")
            if self.kind in (int, float) and not isinstance(v, bool):
                if self.low is not None and v < self.low:
                    raise ValueError(f"{self.name} must be at least {_number(self.low)}, got {v}")
                if self.high is not None and v > self.high:
                    raise ValueError(f"{self.name} must be at most {_number(self.high)}, got {v}")


def _number(value: float) -> str:
    return f"{value:g}"


def format_value(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value) or "none"
    return str(value)


def setting(default, help: str, *, stage: str, kind: type | None = None, unit: str = "", low=None, high=None,
            choices=(), flag: str = "", several: bool = False, optional: bool = False, advanced: bool = False):
    """A dataclass field that describes itself (see :class:`SettingInfo`)."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    if kind is None:
        example = default[0] if several and default else default
        kind = type(example) if example is not None else str
    info = {"help": help, "stage": stage, "kind": kind, "unit": unit, "low": low, "high": high,
            "choices": tuple(choices), "flag": flag, "several": several, "optional": optional, "advanced": advanced}
    return field(default=default, metadata={"setting": info})


def described_fields(cls, prefix: str = "") -> Iterator[SettingInfo]:
    """The described fields of the dataclass ``cls``, nested dataclasses' fields included
    (when the nesting field is itself described with ``kind`` the nested class)."""
    for f in dataclasses.fields(cls):
        info = f.metadata.get("setting")
        if info is None:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        if dataclasses.is_dataclass(info["kind"]):
            yield from described_fields(info["kind"], prefix=f"{prefix}{f.name}.")
            continue
        yield SettingInfo(name=prefix + f.name, default=default, **info)


def nested_replace(obj, changes: dict[str, Any]):
    """``obj`` with ``changes`` applied, where a key may name a nested field ("a.b")."""
    direct, nested = {}, {}
    for key, value in changes.items():
        head, _, rest = key.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            direct[key] = value
    for head, inner in nested.items():
        direct[head] = nested_replace(getattr(obj, head), inner)
    return dataclasses.replace(obj, **direct)


def nested_value(obj, name: str):
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def check_all(obj, cls=None) -> None:
    for info in described_fields(cls or type(obj)):
        info.check(nested_value(obj, info.name))


