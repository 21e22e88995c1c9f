"""Behaviour recovery on the digital twin: did a trained encoder learn the twin's behaviour effects?

A twin dataset made with ``make_twin_dataset.py --behaviour-effects`` knows how behaviour
drives each neuron (``twin.json`` and ``ground_truth/behaviour_effects.npz``): the eye position
moves the image on the retina by ``gaze_px`` pixels per unit of ``pupil_center``, and running
and pupil dilation scale each neuron ``i`` by ``exp(running_i tanh(running / 10) +
pupil_i (pupil - 20) / 8)``. An encoder (``movie_reconstruction.model.Encoder``) has a term for
each: the shifter moves all read points with the pupil position, and the gain network scales
each neuron with running and pupil size. Over the recorded behaviour of the dataset's test
trials (every frame of them), this reports for each encoder, and for the ensemble (the members'
mean displacement, fitted as one shifter, and their mean per-neuron coefficients):

(a) the shifter's eye-position effect: the read-point displacement, in pixels of the frame
    (36x64), regressed on ``pupil_x`` and ``pupil_y`` (least squares with an intercept): the
    2x2 slope in pixels per unit of ``pupil_center`` (rows: displacement x, y; columns:
    pupil_x, pupil_y) and the fit's R^2 (1 for a shifter that is linear over that range).

    Sign convention: a positive slope means the read points move towards +x (+y) on the
    screen frame as pupil_x (pupil_y) grows. The twin moves the image on the retina by
    ``+d = gaze_px * pupil_center``: content at screen pixel ``p`` reaches the retina at
    ``p + d``, so a neuron fixed at retinal point ``m`` sees the screen's content at ``m - d``.
    An encoder reads the screen frame, so to see what that neuron sees it must read at
    ``m - d``: the truth is a slope of ``-gaze_px`` on the diagonal and 0 off it.
    (The twin's responses lag the image by its latency, 2 frames, while the shifter uses the
    current pupil position; pupil position changes slowly, so the best shifter's slope is at
    most slightly smaller in magnitude than ``gaze_px``.)

(b) each neuron's running and pupil modulation: the encoder's log gain, regressed per neuron on
    the twin's own terms ``tanh(running / 10)`` and ``(pupil - 20) / 8`` (with an intercept),
    so that a perfect encoder's coefficients equal the twin's factors. Reported: Pearson r
    across neurons between the coefficients and the twin's ``running`` / ``pupil`` factors, and
    the regression slope of coefficient on factor (1 when the sizes are right too).

Example::

    PYTHONPATH=src python benchmarks/behaviour_recovery.py --results runs/twin-behaviour \\
        --dataset ~/.cache/movie-recon/twin-behaviour --json behaviour_recovery.json
    PYTHONPATH=src python benchmarks/behaviour_recovery.py --checkpoints runs/ens/model_* \\
        --dataset ~/.cache/movie-recon/twin-behaviour
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

PUPIL_POSITION = ("pupil_x", "pupil_y")


# ----------------------------------------------------------------------------- the encoder's side
def channels_for(encoder, behavior: np.ndarray, channels) -> np.ndarray:
    """``behavior (C, F)`` with names ``channels`` -> the encoder's channels, in its order, by name."""
    channels = tuple(channels)
    missing = [c for c in encoder.behavior_channels if c not in channels]
    if missing:
        raise ValueError(f"the behaviour has no channel(s) {missing} that the encoder needs (it has {list(channels)})")
    return np.stack([behavior[channels.index(c)] for c in encoder.behavior_channels]).astype(np.float32)


def _normalised(encoder, behavior: np.ndarray, channels):
    import torch

    b = torch.from_numpy(channels_for(encoder, behavior, channels))[None]
    return encoder._normalised_behavior(b.to(encoder.behavior_mean.device))


def pixels_per_unit(encoder) -> np.ndarray:
    """Frame pixels per unit of the readout's normalised ``(x, y)`` coordinates.

    The readout samples the core's feature map with ``align_corners=False``: -1..1 spans the
    map's cells, each ``stride`` frame pixels wide, so one unit is ``stride * cells / 2`` pixels
    (``W / 2`` and ``H / 2`` when the stride divides the frame)."""
    h, w = encoder.frame_shape
    stride = int(getattr(getattr(encoder, "architecture", None), "stride", 1) or 1)
    return np.array([stride * math.ceil(w / stride) / 2, stride * math.ceil(h / stride) / 2])


def has_shifter(encoder) -> bool:
    return getattr(encoder, "shifter", None) is not None and hasattr(encoder, "_shift")


def has_gain(encoder) -> bool:
    return getattr(encoder, "gain_net", None) is not None and hasattr(encoder, "_gain")


def read_shift_px(encoder, behavior: np.ndarray, channels) -> np.ndarray:
    """The shifter's displacement of all read points, ``(F, 2)`` frame pixels ``(x, y)``, for each
    frame of ``behavior (C, F)`` (channels named ``channels``)."""
    import torch

    with torch.no_grad():
        shift = encoder._shift(_normalised(encoder, behavior, channels))[0].float().cpu().numpy()
    return shift * pixels_per_unit(encoder)


def shifter_slope(encoder, behavior: np.ndarray, channels) -> dict:
    """Least-squares fit ``displacement_px = intercept + slope @ (pupil_x, pupil_y)`` over the
    frames of ``behavior (C, F)``: ``slope`` (2, 2) in pixels per unit of pupil_center (rows:
    displacement x, y; columns: pupil_x, pupil_y), ``intercept`` (2,) and ``r2`` (2,)."""
    return slope_fit(read_shift_px(encoder, behavior, channels), pupil_position(behavior, channels))


def pupil_position(behavior: np.ndarray, channels) -> np.ndarray:
    """``(F, 2)`` pupil_x, pupil_y of ``behavior (C, F)``, by name."""
    channels = tuple(channels)
    return np.stack([behavior[channels.index(c)] for c in PUPIL_POSITION], 1).astype(np.float64)


def slope_fit(shift_px: np.ndarray, pupil: np.ndarray) -> dict:
    """:func:`shifter_slope`'s fit of displacements ``(F, 2)`` on pupil positions ``(F, 2)``."""
    shift = np.asarray(shift_px, np.float64)
    design = np.column_stack([np.ones(len(pupil)), pupil])
    coef, *_ = np.linalg.lstsq(design, shift, rcond=None)  # (3, 2)
    residual = shift - design @ coef
    spread = ((shift - shift.mean(0)) ** 2).sum(0)
    r2 = np.where(spread > 0, 1 - (residual**2).sum(0) / np.where(spread > 0, spread, 1), np.nan)
    return {"slope": coef[1:].T, "intercept": coef[0], "r2": r2}


def log_gain(encoder, behavior: np.ndarray, channels) -> np.ndarray:
    """Each neuron's behavioural log gain ``(N, F)`` for each frame of ``behavior (C, F)``."""
    import torch

    with torch.no_grad():
        gain = encoder._gain(_normalised(encoder, behavior, channels))[0]
    return torch.log(gain).double().cpu().numpy()


def twin_gain_terms(behavior: np.ndarray, channels) -> np.ndarray:
    """The twin's running and pupil terms ``(F, 2)``: ``tanh(running / 10)``, ``(pupil - 20) / 8``."""
    channels = tuple(channels)
    running = behavior[channels.index("running")].astype(np.float64)
    pupil = behavior[channels.index("pupil")].astype(np.float64)
    return np.stack([np.tanh(running / 10), (pupil - 20) / 8], 1)


def gain_sensitivity(encoder, behavior: np.ndarray, channels) -> np.ndarray:
    """Per-neuron coefficients ``(N, 2)`` (running, pupil) of the encoder's log gain regressed on
    the twin's terms (with an intercept) over the frames of ``behavior``."""
    terms = twin_gain_terms(behavior, channels)
    design = np.column_stack([np.ones(len(terms)), terms])
    coef, *_ = np.linalg.lstsq(design, log_gain(encoder, behavior, channels).T, rcond=None)  # (3, N)
    return coef[1:].T


def agreement(estimate: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(Pearson r across neurons, least-squares slope of ``estimate`` on ``truth``)."""
    e, t = estimate - estimate.mean(), truth - truth.mean()
    if not (e @ e > 0 and t @ t > 0):
        return float("nan"), float("nan")
    return float(e @ t / math.sqrt((e @ e) * (t @ t))), float(e @ t / (t @ t))


# ----------------------------------------------------------------------------- the twin's side
def twin_truth(dataset: Path) -> dict:
    """The twin's behaviour effects: ``gaze_px`` and the per-neuron factors, by dataset position."""
    meta = json.loads((dataset / "twin.json").read_text())
    effects = meta.get("behaviour_effects")
    if not effects:
        raise SystemExit(f"{dataset} was made without --behaviour-effects: it has no behaviour effects to recover")
    factors = np.load(dataset / effects["per_neuron"])
    return {"gaze_px": float(effects["gaze_px"]), "running": np.asarray(factors["running"], np.float64),
            "pupil": np.asarray(factors["pupil"], np.float64),
            "unit_ids": np.load(dataset / "meta/neurons/unit_ids.npy")}


def neuron_rows(encoder, unit_ids: np.ndarray) -> np.ndarray:
    """Each of the encoder's neurons' position in the dataset (its ids are the dataset's unit ids)."""
    from movie_reconstruction.model.protocol import neuron_ids

    position = {str(u): i for i, u in enumerate(unit_ids)}
    ids = neuron_ids(encoder)
    unknown = [u for u in ids if str(u) not in position]
    if unknown:
        raise SystemExit(f"encoder neurons {list(unknown[:5])} are not in the dataset")
    return np.array([position[str(u)] for u in ids], dtype=np.int64)


def recorded_behaviour(dataset: Path, tier: str, trials: int | None):
    """``(behaviour (C, F) of the tier's trials concatenated, channel names, trial count)``."""
    from movie_reconstruction.io.sensorium import read_sensorium

    recording = read_sensorium(dataset)
    index = recording.indices(tier)[:trials] if trials else recording.indices(tier)
    if index.size == 0:
        raise SystemExit(f"{dataset} has no {tier} trials")
    behavior = np.concatenate([np.asarray(recording.behavior[int(i)], np.float32) for i in index], 1)
    return behavior, tuple(recording.behavior_channels), int(index.size)


# ----------------------------------------------------------------------------- the benchmark
def measure(encoder, behavior, channels, truth) -> dict:
    """One encoder's row: shifter slope and gain sensitivities, against the twin."""
    row = {"shifter": None, "gain": None, "shift_px": None}
    if has_shifter(encoder):
        row["shift_px"] = read_shift_px(encoder, behavior, channels)
        row["shifter"] = _listed(slope_fit(row["shift_px"], pupil_position(behavior, channels)))
    if has_gain(encoder):
        rows = neuron_rows(encoder, truth["unit_ids"])
        coef = gain_sensitivity(encoder, behavior, channels)
        r_run, s_run = agreement(coef[:, 0], truth["running"][rows])
        r_pup, s_pup = agreement(coef[:, 1], truth["pupil"][rows])
        row["gain"] = {"running_r": r_run, "running_scale": s_run, "pupil_r": r_pup, "pupil_scale": s_pup,
                       "coefficients": coef, "rows": rows}
    return row


def _listed(fit: dict) -> dict:
    return {k: np.asarray(v).tolist() for k, v in fit.items()}


def ensemble_row(rows: list[dict], truth, behavior, channels) -> dict:
    """The members' mean displacement (fitted as one shifter) and mean per-neuron coefficients."""
    shifted = [r["shift_px"] for r in rows if r["shift_px"] is not None]
    gained = [r["gain"] for r in rows if r["gain"]]
    out = {"shifter": None, "gain": None}
    if shifted:
        out["shifter"] = _listed(slope_fit(np.mean(shifted, 0), pupil_position(behavior, channels)))
    if gained and all(np.array_equal(g["rows"], gained[0]["rows"]) for g in gained):
        coef = np.mean([g["coefficients"] for g in gained], 0)
        rows_ = gained[0]["rows"]
        r_run, s_run = agreement(coef[:, 0], truth["running"][rows_])
        r_pup, s_pup = agreement(coef[:, 1], truth["pupil"][rows_])
        out["gain"] = {"running_r": r_run, "running_scale": s_run, "pupil_r": r_pup, "pupil_scale": s_pup}
    return out


def _f(v, digits=2):
    """A signed number; "n/a" where it is undefined (an encoder whose term never moved)."""
    return "n/a" if v is None or math.isnan(v) else f"{v:+.{digits}f}"


def markdown_table(named_rows, gaze_px: float) -> str:
    lines = [
        "| encoder | shift x per pupil_x (px) | shift y per pupil_y (px) | cross x/pupil_y, y/pupil_x | R^2 x, y "
        "| running r | running scale | pupil r | pupil scale |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| twin (truth) | {-gaze_px:+.2f} | {-gaze_px:+.2f} | +0.00, +0.00 | 1, 1 | 1 | 1 | 1 | 1 |",
    ]
    for name, row in named_rows:
        s, g = row["shifter"], row["gain"]
        r2 = ", ".join("no shift" if v is None or math.isnan(v) else f"{v:.2f}" for v in s["r2"]) if s else ""
        shift = (f"{_f(s['slope'][0][0])} | {_f(s['slope'][1][1])} | {_f(s['slope'][0][1])}, {_f(s['slope'][1][0])} | "
                 f"{r2}") if s else "no shifter | | |"
        gain = (f"{_f(g['running_r'])} | {_f(g['running_scale'])} | {_f(g['pupil_r'])} | {_f(g['pupil_scale'])}"
                if g else "no gain network | | |")
        lines.append(f"| {name} | {shift} | {gain} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 2)[2])
    ap.add_argument("--dataset", type=Path, required=True, help="the twin dataset (made with --behaviour-effects)")
    ap.add_argument("--results", type=Path, default=None, help="a results folder: its ensemble's checkpoints")
    ap.add_argument("--checkpoints", type=Path, nargs="*", default=[], help="encoder checkpoint folders")
    ap.add_argument("--tier", default="test", choices=["train", "validation", "test"],
                    help="whose recorded behaviour to evaluate over (default: the test trials)")
    ap.add_argument("--trials", type=int, default=None, help="only the first N trials of the tier")
    ap.add_argument("--json", type=Path, default=None, help="save the results here")
    a = ap.parse_args(argv)

    from movie_reconstruction.model import load_encoder

    checkpoints = list(a.checkpoints)
    if a.results:
        from movie_reconstruction.results import ResultsFolder

        checkpoints += ResultsFolder.open(a.results).checkpoints()
    if not checkpoints:
        ap.error("give --results or --checkpoints")
    truth = twin_truth(a.dataset)
    behavior, channels, n_trials = recorded_behaviour(a.dataset, a.tier, a.trials)
    named = []
    for path in checkpoints:
        encoder = load_encoder(path)
        named.append((Path(path).name, measure(encoder, behavior, channels, truth)))
    if len(named) > 1:
        named.append((f"ensemble mean ({len(named)})", ensemble_row([r for _, r in named], truth, behavior, channels)))
    header = (f"Dataset `{a.dataset}`: behaviour of {n_trials} {a.tier} trials ({behavior.shape[1]} frames); "
              f"twin gaze {truth['gaze_px']:g} px per unit of pupil_center, so the truth's read-point "
              f"displacement is {-truth['gaze_px']:+g} px per unit (read where the retina's content came from). "
              f"Gain: log gain regressed on tanh(running/10) and (pupil-20)/8, r and slope across neurons vs "
              f"the twin's factors.")
    print(header + "\n")
    print(markdown_table(named, truth["gaze_px"]))
    if a.json:
        from movie_reconstruction._atomic import write_text

        def finite(value):  # NaN (an encoder whose shifter never moved) as null: strict JSON
            if isinstance(value, dict):
                return {k: finite(v) for k, v in value.items()}
            if isinstance(value, list):
                return [finite(v) for v in value]
            return None if isinstance(value, float) and math.isnan(value) else value

        def plain(row):
            g = row["gain"]
            return finite({"shifter": row["shifter"],
                           "gain": None if g is None else {k: v for k, v in g.items() if k not in ("coefficients", "rows")}})

        write_text(a.json, json.dumps({
            "command": sys.argv, "dataset": str(a.dataset), "tier": a.tier, "trials": n_trials,
            "frames": int(behavior.shape[1]), "gaze_px": truth["gaze_px"],
            "expected_slope": [[-truth["gaze_px"], 0.0], [0.0, -truth["gaze_px"]]],
            "slope_convention": "read-point displacement in frame pixels (x, y) per unit of pupil_center (x, y); "
                                "rows: displacement x, y; columns: pupil_x, pupil_y",
            "encoders": [{"name": name, **plain(row)} for name, row in named],
        }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
