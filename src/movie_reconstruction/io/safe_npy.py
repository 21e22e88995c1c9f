"""Read ``.npy`` files from folders we did not write without letting them run code.

suite2p stores ``stat.npy``, ``ops.npy``, ``settings.npy``, ``db.npy`` and its other records as
NumPy object arrays, which NumPy saves as pickles. ``np.load(..., allow_pickle=True)`` hands such
a file to :mod:`pickle`, and a pickle can call any importable function while it loads (a crafted
``iscell.npy`` can run a shell command). So:

- :func:`load_array` reads plain numeric arrays (``F.npy``, ``iscell.npy``, ...) with pickles
  switched off: a file that holds Python objects is refused.
- :func:`load_objects` reads object arrays with an unpickler that can only rebuild NumPy arrays,
  dtypes and scalars, and plain values (dicts, lists, tuples, sets, slices, complex numbers,
  dates and times, paths). A reference to anything else stops the read before that thing is
  imported or called, with an :class:`~movie_reconstruction.errors.InputError` naming the file.
"""

from __future__ import annotations

import collections
import datetime
import os
import pathlib
import pickle
from pathlib import Path

import numpy as np

from ..errors import InputError


def _numpy_rebuilders() -> dict[tuple[str, str], object]:
    """The functions NumPy's own pickles call, under every module name NumPy has saved them as.

    Taken from NumPy's ``__reduce__`` rather than imported by name, so this works for NumPy
    1.x (``numpy.core``) and 2.x (``numpy._core``) alike and reads files written by either.
    """
    reconstruct = np.arange(1).__reduce__()[0]  # arrays, pickle protocol <= 4 (what np.save uses)
    scalar = np.float64(0).__reduce__()[0]  # NumPy scalars such as np.float32(1.5)
    frombuffer = np.arange(1).__reduce_ex__(5)[0]  # arrays, pickle protocol 5
    allowed: dict[tuple[str, str], object] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
    return allowed


def _plain_values() -> dict[tuple[str, str], object]:
    """Value types whose constructors only store their arguments: no I/O, no imports, no calls out."""
    allowed: dict[tuple[str, str], object] = {
        ("builtins", value_type.__name__): value_type for value_type in (set, frozenset, slice, complex, range)
    }
    allowed[("collections", "OrderedDict")] = collections.OrderedDict
    for name in ("datetime", "date", "time", "timedelta", "timezone"):  # suite2p 0.x saves date_proc
        allowed[("datetime", name)] = getattr(datetime, name)
    # Paths saved on another OS are read as pure paths: building one never touches the disk.
    on_windows = os.name == "nt"
    paths = {
        "PosixPath": pathlib.PurePosixPath if on_windows else pathlib.PosixPath,
        "WindowsPath": pathlib.WindowsPath if on_windows else pathlib.PureWindowsPath,
        "PurePosixPath": pathlib.PurePosixPath,
        "PureWindowsPath": pathlib.PureWindowsPath,
        "Path": pathlib.Path,
        "PurePath": pathlib.PurePath,
    }
    for module in ("pathlib", "pathlib._local"):  # Python 3.13 moved the classes to pathlib._local
        for name, cls in paths.items():
            allowed[(module, name)] = cls
    return allowed


ALLOWED_GLOBALS: dict[tuple[str, str], object] = {**_numpy_rebuilders(), **_plain_values()}


class _DataOnlyUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS`; every other name is refused unimported."""

    def __init__(self, file, path: Path):
        super().__init__(file)
        self._path = path

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise InputError(
                f"refused: it holds a pickled reference to {module}.{name}, which is not data (a pickle can run code; "
                "only NumPy arrays, numbers, strings and plain containers are read)",
                self._path,
            ) from None

    def persistent_load(self, pid):
        raise InputError("refused: it holds a pickled external reference, which is not data", self._path)


def _open_npy(path: Path):
    """The open file and the dtype its ``.npy`` header declares (the file is left at the data)."""
    if not path.is_file():
        raise InputError("file not found", path)
    fh = open(path, "rb")
    try:
        version = np.lib.format.read_magic(fh)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read_header is None:
            raise InputError(f"unsupported .npy format version {version[0]}.{version[1]}", path)
        shape, _fortran, dtype = read_header(fh)
    except InputError:
        fh.close()
        raise
    except (ValueError, OSError, EOFError) as exc:
        fh.close()
        raise InputError(f"not a NumPy .npy file ({exc})", path) from None
    return fh, shape, dtype


def _read_plain(fh, path: Path) -> np.ndarray:
    fh.seek(0)
    try:
        return np.load(fh, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"cannot read ({exc})", path) from None


def load_array(path: str | Path) -> np.ndarray:
    """A plain (numeric, string or structured) array; a file holding pickled objects is refused."""
    path = Path(path)
    fh, _shape, dtype = _open_npy(path)
    with fh:
        if dtype.hasobject:
            raise InputError("refused: it holds pickled Python objects where a plain numeric array is expected", path)
        return _read_plain(fh, path)


def load_objects(path: str | Path) -> np.ndarray:
    """An array that may hold Python objects (suite2p's stat/ops), rebuilt from data only.

    A 0-d object array (how ``np.save`` stores a dict) is returned as is; ``.item()`` unwraps it.
    """
    path = Path(path)
    fh, shape, dtype = _open_npy(path)
    with fh:
        if not dtype.hasobject:
            return _read_plain(fh, path)
        try:
            array = _DataOnlyUnpickler(fh, path).load()
        except InputError:
            raise
        except Exception as exc:  # a damaged pickle raises any of UnpicklingError, EOFError, TypeError, ...
            raise InputError(f"cannot read ({type(exc).__name__}: {exc})", path) from None
    if not isinstance(array, np.ndarray) or array.shape != shape:
        raise InputError(f"its contents do not match its header (expected an array of shape {shape})", path)
    return array


def load_record(path: str | Path) -> dict:
    """A dict saved with ``np.save`` (suite2p's ``ops.npy``, ``db.npy``, ``reg_outputs.npy``)."""
    path = Path(path)
    array = load_objects(path)
    record = array.item() if array.dtype == object and array.ndim == 0 else None
    if not isinstance(record, dict):
        raise InputError(f"expected a saved dict, found an array of shape {array.shape} and dtype {array.dtype}", path)
    return record
