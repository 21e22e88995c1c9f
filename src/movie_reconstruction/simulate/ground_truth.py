"""The simulation's truth, written into ``ground_truth/`` beside the session (which the pipeline never
reads) and read back as :class:`GroundTruth` by tests and benchmarks."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .imaging import Field
from .population import V1Population
from .timeline import Timeline


@dataclass
class GroundTruth:
    """What the simulated mouse really did (loaded from ``ground_truth/``)."""

    rates: np.ndarray  # (N, stimulus frames) spikes/s, constant over each frame
    spikes_on_stimulus_frames: np.ndarray  # (N, stimulus frames) spike counts
    spike_times: np.ndarray  # (S,) s
    spike_neurons: np.ndarray  # (S,)
    dff: np.ndarray  # (N, imaging frames) noise-free dF/F
    labels: np.ndarray  # (Y, X) int32, neuron k is k + 1
    centres: np.ndarray  # (N, 2) soma centres (y, x), pixels
    footprints: object  # scipy.sparse (N, Y*X)
    motion: np.ndarray  # (imaging frames, 2) (dy, dx) pixels applied to each frame


def load_ground_truth(folder: str | Path) -> GroundTruth:
    from scipy import sparse

    truth = Path(folder) / "ground_truth"
    if not truth.is_dir():
        raise InputError("no ground_truth folder", folder)
    fp = np.load(truth / "footprints.npz")
    neurons = np.loadtxt(truth / "neurons.csv", delimiter=",", skiprows=1, ndmin=2)
    return GroundTruth(
        rates=np.load(truth / "rates.npy"),
        spikes_on_stimulus_frames=np.load(truth / "spikes_on_stimulus_frames.npy"),
        spike_times=np.load(truth / "spike_times.npy"),
        spike_neurons=np.load(truth / "spike_neurons.npy"),
        dff=np.load(truth / "dff.npy"),
        labels=np.load(truth / "labels.npy"),
        centres=neurons[:, 1:3].astype(np.float32),
        footprints=sparse.csr_matrix((fp["data"], fp["indices"], fp["indptr"]), shape=tuple(fp["shape"])),
        motion=np.load(truth / "motion.npy"),
    )


def write_ground_truth(
    folder: Path,
    rates: np.ndarray,
    spike_times: np.ndarray,
    spike_neurons: np.ndarray,
    timeline: Timeline,
    dff: np.ndarray,
    field: Field,
    motion: np.ndarray,
    neuropil: np.ndarray,
    bleach: np.ndarray,
    population: V1Population | None,
) -> None:
    n, n_frames = rates.shape
    edges = np.append(timeline.frame_times, timeline.frame_ends[-1])
    inside = (spike_times >= edges[0]) & (spike_times < edges[-1])
    frame_of_spike = np.searchsorted(edges, spike_times[inside], side="right") - 1
    counts = np.zeros((n, n_frames), np.uint16)
    np.add.at(counts, (spike_neurons[inside], frame_of_spike), 1)
    np.save(folder / "rates.npy", rates.astype(np.float32))
    np.save(folder / "spikes_on_stimulus_frames.npy", counts)
    np.save(folder / "spike_times.npy", spike_times.astype(np.float64))
    np.save(folder / "spike_neurons.npy", spike_neurons.astype(np.int32))
    np.save(folder / "dff.npy", dff.astype(np.float32))
    np.save(folder / "motion.npy", motion.astype(np.float32))
    np.save(folder / "neuropil_dff.npy", neuropil.astype(np.float32))
    np.save(folder / "bleaching.npy", bleach.astype(np.float32))
    np.save(folder / "labels.npy", field.labels())
    fp = field.footprints.tocsr()
    np.savez(folder / "footprints.npz", data=fp.data, indices=fp.indices, indptr=fp.indptr, shape=np.asarray(fp.shape))
    header = "neuron,soma_y,soma_x,radius,brightness,peak_dff"
    table = np.column_stack([np.arange(n), field.centres, field.radii, field.brightness, dff.max(axis=1)])
    np.savetxt(folder / "neurons.csv", table, delimiter=",", header=header, comments="", fmt="%.5g")
    if population is not None:
        np.savez(folder / "population.npz", **population.parameters())
    index = {
        "rates.npy": "(neurons, stimulus frames) float32 spikes/s, constant over each stimulus frame",
        "spikes_on_stimulus_frames.npy": "(neurons, stimulus frames) spike counts within each frame",
        "spike_times.npy": "(spikes,) float64 s on the shared clock; spike_neurons.npy gives each spike's neuron",
        "dff.npy": "(neurons, imaging frames) noise-free dF/F at the imaging frame times",
        "motion.npy": "(imaging frames, 2) rigid (dy, dx) shift in pixels applied to each frame",
        "labels.npy": "(Y, X) int32 soma label image, neuron k is k + 1 (unmoved frame)",
        "footprints.npz": "scipy.sparse CSR (neurons, Y*X) soma weights: data, indices, indptr, shape",
        "neurons.csv": "per neuron: soma centre (pixels), radius, brightness (photons/frame), peak dF/F",
        "neuropil_dff.npy": "(modes, imaging frames) neuropil dF/F time courses",
        "bleaching.npy": "(imaging frames,) fluorescence multiplier",
        "population.npz": "parameters of the built-in V1 population (absent when rates_fn was given)",
        "imaging_frame_times.npy": "sessions with DAQ sync signals only: the true imaging frame times they encode",
        "stimulus_frame_times.npy": "sessions with DAQ sync signals only: the true stimulus frame times",
    }
    (folder / "index.json").write_text(json.dumps(index, indent=1))
