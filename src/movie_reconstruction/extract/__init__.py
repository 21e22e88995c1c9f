"""Run suite2p 1.x on a raw two-photon stack and return one :class:`~movie_reconstruction.traces.Traces` per plane.

``extract_traces`` checks its input and settings, then returns a job generator (see
:mod:`movie_reconstruction.progress`): it yields ``Progress`` events translated from suite2p's
own log (conversion, registration, detection, extraction, deconvolution, classification) and
returns ``list[Traces]``. Closing the generator cancels the run at the next stage boundary.

Output layout, inside the folder the user picks::

    output_dir/suite2p/            a finished run, readable by the suite2p GUI and by
                                   io.suite2p_folder.read_suite2p_folder
    output_dir/suite2p/movie_recon_run.json      what produced it (input fingerprint, settings)
    output_dir/.suite2p.partial/   an unfinished run (cancelled or crashed), with the same marker
                                   listing its finished stages; a re-run with the same input and
                                   settings resumes from it, any other run discards it.

The finished folder only appears by a rename once every plane is done, so a cancelled run never
leaves a half-written ``suite2p`` folder. The raw input is only ever opened for reading; suite2p
works on its own int16 binary (``plane*/data.bin``) inside the output folder.

The package's modules, in the order a run uses them: ``suite2p_config`` (suite2p's settings),
``stack`` (the raw input, read in chunks), ``run_folder`` (the marker, staging and publishing),
``conversion`` (suite2p's int16 binaries), ``suite2p_run`` (suite2p's pipeline in a thread, its log
as progress) and ``job`` (:func:`extract_traces`).
"""

from .job import extract_traces
from .run_folder import FINAL_FOLDER, RUN_MARKER, STAGING_FOLDER
from .stack import HDF5_SUFFIXES
from .suite2p_config import small_fov_overrides, suite2p_settings
from .suite2p_run import ExtractionCancelled

__all__ = [
    "FINAL_FOLDER",
    "HDF5_SUFFIXES",
    "RUN_MARKER",
    "STAGING_FOLDER",
    "ExtractionCancelled",
    "extract_traces",
    "small_fov_overrides",
    "suite2p_settings",
]
