"""Plugin modules: the user's own Python modules that register encoder kinds or losses.

A plugin is any importable module that calls :func:`movie_reconstruction.model.register_encoder`
or :func:`movie_reconstruction.losses.register_loss` when imported. It is named explicitly,
by module name, in one of two ways:

- ``MOVIE_RECON_PLUGINS=my_lab.encoders,my_lab.losses`` (comma-separated) in the environment:
  every process that looks up a kind or a loss it does not know imports these first, so Dask
  workers started from this process (which inherit its environment) know them too;
- ``movie-recon <command> --plugin my_lab.encoders``, which imports the module and adds it to
  ``MOVIE_RECON_PLUGINS`` for the processes this command starts.

Nothing is ever discovered or imported that the user did not name: no entry points, no
scanning of folders, no file paths (a module must be importable, e.g. on ``PYTHONPATH``).
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Iterable

from .errors import InputError

ENVIRONMENT_VARIABLE = "MOVIE_RECON_PLUGINS"
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_imported: set[str] = set()


def named_in_environment() -> list[str]:
    """The module names listed in ``MOVIE_RECON_PLUGINS`` (empty when unset)."""
    text = os.environ.get(ENVIRONMENT_VARIABLE, "")
    return [name.strip() for name in text.split(",") if name.strip()]


def load_plugins(modules: Iterable[str]) -> list[str]:
    """Import each named module once (a plugin registers its kinds and losses on import);
    returns the names imported now. :class:`InputError` for a name that is not a module name
    or a module that fails to import, naming it."""
    loaded = []
    for name in modules:
        if name in _imported:
            continue
        if not _MODULE_NAME.match(name):
            raise InputError(f"plugin {name!r} is not a module name (expected e.g. my_lab.encoders)")
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - any failure of the user's module is bad input
            raise InputError(f"could not import plugin module {name!r} ({type(exc).__name__}: {exc})") from None
        _imported.add(name)
        loaded.append(name)
    return loaded


def load_environment_plugins() -> list[str]:
    """Import the modules named in ``MOVIE_RECON_PLUGINS`` that are not imported yet."""
    return load_plugins(named_in_environment())


def use_plugins(modules: Iterable[str]) -> list[str]:
    """Import ``modules`` and add them to ``MOVIE_RECON_PLUGINS``, so that processes started
    from this one (Dask workers, subprocesses) import them too."""
    modules = list(modules)
    loaded = load_plugins(modules)
    listed = named_in_environment()
    listed += [name for name in modules if name not in listed]
    if listed:
        os.environ[ENVIRONMENT_VARIABLE] = ",".join(listed)
    return loaded


def look_up(table: dict, name: str, what: str, how_to_add: str):
    """``table[name]`` of a registry (encoder kinds, losses), importing the modules named in
    ``MOVIE_RECON_PLUGINS`` first when it is missing; :class:`ValueError` naming the known
    entries otherwise."""
    if name not in table:
        load_environment_plugins()
    if name not in table:
        raise ValueError(f"unknown {what} {name!r}; known: {', '.join(table)} ({how_to_add})")
    return table[name]
