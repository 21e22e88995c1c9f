"""The command line's setting options, made from the settings' own descriptions
(:mod:`movie_reconstruction.settings`), and the settings a parsed command line asks for."""

from __future__ import annotations

import argparse
from collections.abc import Collection
from pathlib import Path

from ._schema import SettingInfo, nested_replace
from .errors import InputError
from .settings import PipelineSettings, read_settings_file, setting_infos

_METAVARS = {int: "N", float: "X", str: "TEXT"}


class _NoValue:
    """What "none" on the command line parses to (None itself means "not given")."""


NO_VALUE = _NoValue()


def _value_parser(info: SettingInfo):
    def parse(text: str):
        try:
            value = info.parse(text)
        except ValueError:
            what = "comma-separated " + info.kind.__name__ + " values" if info.several else "a " + info.kind.__name__
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        return NO_VALUE if value is None else value

    parse.__name__ = info.kind.__name__  # argparse names the type in its messages
    return parse


def add_setting_options(parser: argparse.ArgumentParser, stages: Collection[str], *, only: Collection[str] = (),
                        skip: Collection[str] = ()) -> None:
    """One option per described setting of ``stages`` (plus the names in ``only``), and ``--settings FILE``."""
    group = parser.add_argument_group("settings (docs/settings.md; a --settings file gives defaults, options win)")
    group.add_argument("--settings", dest="settings_file", type=Path, default=None, metavar="FILE",
                       help="a settings file (TOML) with the same names as these options")
    for info in setting_infos():
        if (info.stage not in stages and info.name not in only) or info.name in skip:
            continue
        common = {"dest": info.name, "default": None, "help": info.describe()}
        if info.kind is bool:
            group.add_argument(info.option, action=argparse.BooleanOptionalAction, **common)
            continue
        if info.choices and not info.several:
            group.add_argument(info.option, type=_value_parser(info), choices=info.choices, **common)
            continue
        metavar = "A,B,..." if info.several else _METAVARS.get(info.kind, "VALUE")
        group.add_argument(info.option, type=_value_parser(info), metavar=metavar, **common)


def settings_from_args(args: argparse.Namespace, base: PipelineSettings | None = None) -> PipelineSettings:
    """``base`` changed by the settings file, then by the options given on the command line."""
    settings = base or PipelineSettings()
    if getattr(args, "settings_file", None) is not None:
        settings = read_settings_file(args.settings_file, settings)
    changes = {}
    for info in setting_infos():
        value = getattr(args, info.name, None)
        if value is not None:
            changes[info.name] = None if value is NO_VALUE else value
    try:
        return nested_replace(settings, changes)
    except ValueError as exc:
        raise InputError(str(exc)) from None
