"""What the command line lets through to the user's console: this tool's own messages, not the
start-up chatter and warnings of the libraries underneath (unless ``--verbose``)."""

from __future__ import annotations

import logging
import sys
import warnings

# Dependencies whose start-up messages (suite2p's "pynwb not installed", dask's cluster notes)
# are not addressed to our users; --verbose shows them.
CHATTY_LOGGERS = ("suite2p", "distributed", "numba", "PIL", "matplotlib", "h5py", "napari")


def configure_console(verbose: bool) -> None:
    """Keep the console to what this tool has to say, unless ``verbose`` asks for everything."""
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
        warnings.simplefilter("default")
        return
    warnings.filterwarnings("ignore")
    warnings.filterwarnings("default", module=r"movie_reconstruction(\.|$)")
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def show_warning(command, show, message, category, filename, lineno, file=None, line=None):
    """Our own warnings (a stale lock taken over, a member left out) as one line each; others
    through ``show`` (Python's own display)."""
    from .errors import RunWarning

    if issubclass(category, RunWarning):
        print(f"movie-recon {command}: warning: {message}", file=sys.stderr)
    else:
        show(message, category, filename, lineno, file, line)
