"""A digital mouse: simulated two-photon sessions of V1 watching natural movies.

``simulate_session(out_dir, config=SimulationConfig.quick(), seed=0)`` writes a session
folder (raw TIFFs, stimulus movie, timestamps, behaviour, ``session.toml``) that the same
readers load as a lab session, with the ground truth (spikes, rates, footprints, motion) in
``ground_truth/`` beside it. See docs/simulation.md.
"""

from .config import (
    INDICATORS,
    BehaviourConfig,
    ImagingConfig,
    PopulationConfig,
    SimulationConfig,
    StimulusConfig,
)
from .ground_truth import GroundTruth, load_ground_truth
from .population import V1Population
from .sample import ensure_sample_session, simulated_session_sample
from .session import SimulatedSession, simulate_session, simulate_session_job

__all__ = [
    "INDICATORS",
    "BehaviourConfig",
    "GroundTruth",
    "ImagingConfig",
    "PopulationConfig",
    "SimulatedSession",
    "SimulationConfig",
    "StimulusConfig",
    "V1Population",
    "ensure_sample_session",
    "load_ground_truth",
    "simulate_session",
    "simulate_session_job",
    "simulated_session_sample",
]
