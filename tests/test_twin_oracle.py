"""The twin oracle (benchmarks/reconstruct_twin.py) for plain and --behaviour-effects twins, and the
behaviour-recovery benchmark's estimators (benchmarks/behaviour_recovery.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from movie_reconstruction.model import Encoder, EncoderConfig, Normalization
from movie_reconstruction.recording import BEHAVIOR_CHANNELS

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
# stored rates are float32 values of order 1; the oracle recomputes them with the same operations
FLOAT_PRECISION = 1e-5


@pytest.fixture
def benchmarks(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))


@pytest.fixture(scope="module")
def behaviour_twin(tmp_path_factory, twin_dir, shared_data) -> Path:
    """A tiny --behaviour-effects twin with noise-free rates: 3 train, 1 validation, 1 test trial (id 4)."""
    out = tmp_path_factory.mktemp("behaviour-twin") / "mouse"
    cmd = [
        sys.executable, str(twin_dir / "make_twin_dataset.py"),
        "--checkpoint", str(twin_dir / "sensorium_sota_model.pth"),
        "--train-media", str(shared_data / "movies" / "carphone_pristine.mp4"), str(shared_data / "images" / "kodim03.png"),
        "--test-media", str(shared_data / "movies" / "realshort.mp4"),
        "--out", str(out), "--neurons", "100", "--trials", "4", "--test-trials", "1", "--frames", "60",
        "--seed", "1", "--behaviour-effects", "--save-rates",
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    return out


def _inputs(dataset: Path, trial_id: int, oracle):
    from movie_reconstruction.io.sensorium import read_sensorium
    from movie_reconstruction.reconstruct.inputs import behavior_for

    recording = read_sensorium(dataset)
    trial = recording.trial(int(np.flatnonzero(recording.trial_ids == trial_id)[0]))
    video = torch.from_numpy(np.array(trial.video, dtype=np.float32))[None]
    stored = np.load(dataset / "ground_truth" / "rates" / f"{trial_id}.npy")
    return video, torch.from_numpy(behavior_for(oracle, trial))[None], stored


def _max_error(oracle, video, behavior, stored) -> float:
    with torch.no_grad():
        return float(np.abs(oracle(video, behavior)[0].numpy() - stored).max())


# ------------------------------------------------------------------------------------------ the oracle
@pytest.mark.slow
def test_oracle_reproduces_a_behaviour_effects_twin(behaviour_twin, twin_dir, benchmarks):
    from reconstruct_twin import TwinOracle, self_check

    meta = json.loads((behaviour_twin / "twin.json").read_text())
    assert meta["behaviour_effects"]["gaze_px"] == 0.5
    for trial_id in (0, 4):  # a train trial and the test trial
        error, mean_rate, oracle = self_check(twin_dir, behaviour_twin, trial_id)
        assert oracle.behaviour_effects and oracle.gaze_px == 0.5
        assert oracle.behavior_channels == BEHAVIOR_CHANNELS == ("pupil", "running", "pupil_x", "pupil_y")
        assert mean_rate > 0.1
        assert error < FLOAT_PRECISION, (trial_id, error)
        # the oracle that ignores the effects (the plain twin's model) is far off
        ignored, _, plain = self_check(twin_dir, behaviour_twin, trial_id, behaviour_effects=False)
        assert plain.behavior_channels == ("running",)
        assert ignored > 1000 * FLOAT_PRECISION, (trial_id, ignored)

    oracle = TwinOracle(twin_dir, behaviour_twin)
    video, behavior, stored = _inputs(behaviour_twin, 4, oracle)
    assert _max_error(oracle, video, behavior, stored) < FLOAT_PRECISION
    # each effect matters on its own: without the gaze shift, or without the per-neuron gain
    oracle.gaze_px = 0.0
    assert _max_error(oracle, video, behavior, stored) > 100 * FLOAT_PRECISION
    oracle.gaze_px = 0.5
    running = oracle.running_factor.clone()
    oracle.running_factor.zero_()
    assert _max_error(oracle, video, behavior, stored) > 100 * FLOAT_PRECISION
    oracle.running_factor.copy_(running)
    oracle.pupil_factor.zero_()
    assert _max_error(oracle, video, behavior, stored) > 100 * FLOAT_PRECISION


@pytest.mark.slow
def test_behaviour_oracle_finds_channels_by_name_and_is_differentiable(behaviour_twin, twin_dir, benchmarks):
    from reconstruct_twin import TwinOracle

    # a recording whose channels come in another order: the oracle asks for them by name
    shuffled = ("pupil_y", "running", "pupil", "pupil_x")
    oracle = TwinOracle(twin_dir, behaviour_twin, behavior_channels=shuffled)
    assert oracle.behavior_channels == shuffled
    video, behavior, stored = _inputs(behaviour_twin, 4, oracle)
    assert _max_error(oracle, video, behavior, stored) < FLOAT_PRECISION
    # the pixel gradient flows through the gaze shift and the CNN
    video.requires_grad_(True)
    oracle(video, behavior)[:, :, :31].sum().backward()
    grad = video.grad[0]
    assert torch.isfinite(grad).all() and grad[:29].abs().sum() > 0
    assert (grad[29:] == 0).all()  # causal, 2 frames late: frames after 28 cannot reach output frame 30
    # a subset of neurons gets its own factors
    subset = np.load(behaviour_twin / "meta" / "neurons" / "unit_ids.npy")[[3, 50, 97]]
    small = TwinOracle(twin_dir, behaviour_twin, neuron_ids=subset)
    video, behavior, stored = _inputs(behaviour_twin, 4, small)  # in the recording's order now
    with torch.no_grad():
        rates = small(video, behavior)[0].numpy()
    assert np.abs(rates - stored[[3, 50, 97]]).max() < FLOAT_PRECISION


@pytest.mark.slow
def test_plain_twin_oracle_is_unchanged(tiny_twin_dataset, twin_dir, benchmarks):
    from reconstruct_twin import TwinOracle, self_check

    error, _, oracle = self_check(twin_dir, tiny_twin_dataset, 5)
    assert not oracle.behaviour_effects and oracle.behavior_channels == ("running",)
    assert error < FLOAT_PRECISION
    with pytest.raises(ValueError, match="without --behaviour-effects"):
        TwinOracle(twin_dir, tiny_twin_dataset, behaviour_effects=True)


def test_gaze_shift_matches_the_twin_script(twin_dir, benchmarks):
    from reconstruct_twin import import_twin_script, shift_on_retina

    script = import_twin_script(twin_dir / "make_twin_dataset.py")
    frames = torch.rand(5, script.H, script.W) * 4 - 2
    shift = torch.randn(5, 2) * 1.7
    assert torch.equal(shift_on_retina(frames, shift), script.gaze_shift(frames, shift))


def test_read_point_sign_convention(benchmarks):
    """The twin moves the image by +d on the retina; an encoder reading the screen frame sees what
    a retinal point m sees by reading at m - d, i.e. a displacement of -gaze_px per unit of pupil."""
    import torch.nn.functional as F
    from behaviour_recovery import pixels_per_unit
    from reconstruct_twin import shift_on_retina

    h, w = 36, 64
    screen = torch.rand(1, h, w)
    d = torch.tensor([[3.0, -2.0]])  # whole pixels, so bilinear shifting and sampling are exact
    retina = shift_on_retina(screen, d)
    torch.testing.assert_close(retina[0, 10:30, 10:50], screen[0, 12:32, 7:47], atol=1e-5, rtol=0)  # p -> p + d

    class Frame:  # a stride-1 encoder's geometry: read points normalised as the readout's
        frame_shape = (h, w)

    scale = torch.from_numpy(pixels_per_unit(Frame())).float()
    m = (torch.tensor([[20.0, 15.0]]) + 0.5) / torch.tensor([w, h]) * 2 - 1  # pixel centre (x 20, y 15)

    def read(image, point):
        return F.grid_sample(image[None], point.view(1, 1, 1, 2), align_corners=False, padding_mode="border").item()

    seen_by_neuron = read(retina, m)
    assert read(screen, m - d / scale) == pytest.approx(seen_by_neuron, abs=1e-5)
    assert read(screen, m + d / scale) != pytest.approx(seen_by_neuron, abs=1e-3)


# ------------------------------------------------------------------------------------------ estimators
RECORDING_ORDER = BEHAVIOR_CHANNELS  # pupil, running, pupil_x, pupil_y
ENCODER_ORDER = ("running", "pupil_x", "pupil", "pupil_y")  # another order: found by name
MEAN = {"running": 4.0, "pupil_x": 0.3, "pupil": 21.0, "pupil_y": -0.4}
STD = {"running": 5.0, "pupil_x": 1.5, "pupil": 3.0, "pupil_y": 2.5}


def _encoder(n=7) -> Encoder:
    torch.manual_seed(0)
    return Encoder(
        n, (36, 64), ENCODER_ORDER, EncoderConfig(channels=4, blocks=1),
        Normalization(behavior_mean=tuple(MEAN[c] for c in ENCODER_ORDER), behavior_std=tuple(STD[c] for c in ENCODER_ORDER)),
    ).eval()


def _behaviour(frames=2000, seed=1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    b = {c: MEAN[c] + STD[c] * rng.standard_normal(frames) for c in RECORDING_ORDER}
    b["running"] = np.abs(b["running"])
    return np.stack([b[c] for c in RECORDING_ORDER]).astype(np.float32)


class LinearShift(nn.Module):
    """A known shifter: normalised pupil (x, y) -> read-point shift ``matrix @ z + offset``."""

    def __init__(self, matrix, offset):
        super().__init__()
        self.register_buffer("matrix", torch.tensor(matrix, dtype=torch.float32))
        self.register_buffer("offset", torch.tensor(offset, dtype=torch.float32))

    def forward(self, pupil_xy):
        return pupil_xy.transpose(1, 2) @ self.matrix.T + self.offset


def test_shifter_slope_of_a_known_linear_shifter(benchmarks):
    from behaviour_recovery import shifter_slope

    encoder = _encoder()
    matrix = np.array([[-0.02, 0.005], [0.01, 0.03]])
    offset = np.array([0.05, -0.1])
    encoder.shifter = LinearShift(matrix, offset)
    fit = shifter_slope(encoder, _behaviour(), RECORDING_ORDER)
    px = np.array([32.0, 18.0])  # W/2, H/2: frame pixels per normalised unit
    std = np.array([STD["pupil_x"], STD["pupil_y"]])
    mean = np.array([MEAN["pupil_x"], MEAN["pupil_y"]])
    expected_slope = px[:, None] * matrix / std[None, :]
    expected_intercept = px * (offset - matrix @ (mean / std))
    np.testing.assert_allclose(fit["slope"], expected_slope, atol=1e-5)
    np.testing.assert_allclose(fit["intercept"], expected_intercept, atol=1e-4)
    np.testing.assert_allclose(fit["r2"], 1.0, atol=1e-6)
    # the x displacement per unit of pupil_x: -0.02 * 32 / 1.5
    assert fit["slope"][0, 0] == pytest.approx(-0.02 * 32 / 1.5, rel=1e-4)


def test_shifter_slope_of_the_encoders_own_shifter(benchmarks):
    """The encoder's tanh shifter with small weights is nearly linear: slope ~ the weights' product."""
    from behaviour_recovery import shifter_slope

    encoder = _encoder()
    torch.manual_seed(3)
    first, second = encoder.shifter.net[0], encoder.shifter.net[2]
    with torch.no_grad():
        first.weight.copy_(0.01 * torch.randn_like(first.weight))
        first.bias.zero_()
        second.weight.copy_(0.5 * torch.randn_like(second.weight))
        second.bias.zero_()
    # normalised shift per normalised pupil position, to first order
    linear = second.weight.detach().double().numpy() @ first.weight.detach().double().numpy()
    fit = shifter_slope(encoder, _behaviour(), RECORDING_ORDER)
    expected = np.array([32.0, 18.0])[:, None] * linear / np.array([STD["pupil_x"], STD["pupil_y"]])[None, :]
    np.testing.assert_allclose(fit["slope"], expected, rtol=0.01, atol=0.005 * np.abs(expected).max())
    assert (fit["r2"] > 0.99).all()


def test_gain_sensitivity_recovers_known_factors(benchmarks):
    from behaviour_recovery import agreement, gain_sensitivity

    encoder = _encoder(n=50)
    gain_channels = [ENCODER_ORDER[i] for i in encoder.gain_index]
    assert gain_channels == ["running", "pupil"]

    class TwinTerms(nn.Module):  # normalised (running, pupil) -> the twin's tanh(running/10), (pupil-20)/8
        def forward(self, z):
            running = z[..., 0] * STD["running"] + MEAN["running"]
            pupil = z[..., 1] * STD["pupil"] + MEAN["pupil"]
            return torch.stack([torch.tanh(running / 10), (pupil - 20) / 8], -1)

    rng = np.random.default_rng(2)
    truth = np.stack([rng.normal(0.15, 0.3, 50), rng.normal(0.05, 0.15, 50)], 1)
    encoder.gain_net = TwinTerms()
    encoder.gain_weights = nn.Parameter(torch.tensor(truth, dtype=torch.float32))
    coef = gain_sensitivity(encoder, _behaviour(), RECORDING_ORDER)
    np.testing.assert_allclose(coef, truth, atol=1e-4)
    for k in range(2):
        r, scale = agreement(coef[:, k], truth[:, k])
        assert r == pytest.approx(1.0, abs=1e-6) and scale == pytest.approx(1.0, abs=1e-3)
    r, _ = agreement(coef[:, 0], truth[:, 1])  # running's coefficients are not pupil's factors
    assert abs(r) < 0.5


@pytest.mark.slow
def test_behaviour_recovery_command(behaviour_twin, benchmarks, tmp_path, capsys):
    """The command on two saved encoders: its table and JSON agree with the estimators."""
    from behaviour_recovery import main, recorded_behaviour, shifter_slope

    from movie_reconstruction.model import save_encoder

    ids = np.load(behaviour_twin / "meta" / "neurons" / "unit_ids.npy")
    paths = []
    for k in range(2):
        torch.manual_seed(k)
        encoder = Encoder(100, (36, 64), BEHAVIOR_CHANNELS, EncoderConfig(channels=4, blocks=1),
                          Normalization(behavior_mean=(20.0, 3.0, 0.0, 0.0), behavior_std=(3.0, 5.0, 1.0, 1.0)),
                          neuron_ids=ids)
        with torch.no_grad():
            encoder.shifter.net[2].weight.normal_(0, 0.3)
            encoder.gain_weights.normal_(0, 0.3)
        paths.append(save_encoder(encoder, tmp_path / f"model_{k}"))
    out = tmp_path / "recovery.json"
    assert main(["--dataset", str(behaviour_twin), "--checkpoints", *map(str, paths), "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| twin (truth) | -0.50 | -0.50 |" in table and "ensemble mean (2)" in table
    saved = json.loads(out.read_text())
    assert saved["expected_slope"] == [[-0.5, 0.0], [0.0, -0.5]]
    assert [e["name"] for e in saved["encoders"]] == ["model_0", "model_1", "ensemble mean (2)"]
    behavior, channels, trials = recorded_behaviour(behaviour_twin, "test", None)
    assert trials == 1 and behavior.shape == (4, 60)
    from movie_reconstruction.model import load_encoder

    direct = shifter_slope(load_encoder(paths[0]), behavior, channels)
    np.testing.assert_allclose(saved["encoders"][0]["shifter"]["slope"], direct["slope"], rtol=1e-6)
    # the ensemble's displacement is the members' mean, so its slope is their slopes' mean
    members = [np.array(e["shifter"]["slope"]) for e in saved["encoders"][:2]]
    np.testing.assert_allclose(saved["encoders"][2]["shifter"]["slope"], np.mean(members, 0), rtol=1e-6, atol=1e-9)
    assert -1 <= saved["encoders"][0]["gain"]["running_r"] <= 1
