"""Extension points: an encoder kind defined here, outside the package, is registered, trained,
saved, reloaded and reconstructed with, through the public API and through ``movie-recon``
(which imports this module as a plugin); the loss table; the encoder contract checked at load;
checkpoints written before encoder kinds existed; presets listed once.

This module is also the plugin the CLI subprocesses import (``--plugin test_encoder_registry``
or ``MOVIE_RECON_PLUGINS``): importing it registers :data:`KIND`.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from movie_reconstruction.errors import InputError  # noqa: E402
from movie_reconstruction.model import (  # noqa: E402
    BUILTIN_KIND,
    Encoder,
    EncoderModel,
    TrainConfig,
    encoder_kinds,
    evaluate_encoder,
    load_encoder,
    register_encoder,
    save_encoder,
    train_encoder,
)
from movie_reconstruction.progress import run  # noqa: E402
from movie_reconstruction.reconstruct import ReconstructionConfig, reconstruct  # noqa: E402

from test_results import tiny_recording  # noqa: E402

KIND = "toy-linear"
PLUGIN = Path(__file__).stem
TESTS = Path(__file__).resolve().parent
POOL = 4  # the toy sees frames pooled 4x4 (36x64 -> 9x16)


class LinearEncoder(torch.nn.Module):
    """A toy architecture: each neuron a linear filter of the pooled frame, then softplus; no
    behaviour, no memory. Only what the encoder contract asks for, plus the two factory methods."""

    kind = KIND

    def __init__(self, n_neurons, frame_shape, behavior_channels, neuron_ids=None):
        super().__init__()
        self.n_neurons = int(n_neurons)
        self.frame_shape = (int(frame_shape[0]), int(frame_shape[1]))
        self.behavior_channels = tuple(behavior_channels)
        self.neuron_ids = np.arange(self.n_neurons) if neuron_ids is None else np.asarray(neuron_ids)
        self.pooled = (self.frame_shape[0] // POOL, self.frame_shape[1] // POOL)
        self.weights = torch.nn.Parameter(torch.zeros(self.n_neurons, self.pooled[0] * self.pooled[1]))
        self.bias = torch.nn.Parameter(torch.zeros(self.n_neurons))

    @property
    def config(self) -> dict:
        return {"kind": self.kind, "n_neurons": self.n_neurons, "frame_shape": list(self.frame_shape),
                "behavior_channels": list(self.behavior_channels)}

    @classmethod
    def build(cls, spec):
        model = cls(spec.n_neurons, spec.frame_shape, spec.behavior_channels, spec.neuron_ids)
        torch.nn.init.normal_(model.weights, std=0.05)
        mean = torch.as_tensor(np.maximum(spec.mean_response, 1e-3), dtype=torch.float32)
        with torch.no_grad():
            model.bias.copy_(torch.log(torch.expm1(mean)))  # softplus(bias) = each neuron's mean rate
        return model

    @classmethod
    def from_config(cls, config, *, neuron_ids=None):
        return cls(config["n_neurons"], config["frame_shape"], config["behavior_channels"], neuron_ids)

    def readout_positions(self):
        """Each filter's centre of mass, normalised (x, y) in [-1, 1]."""
        with torch.no_grad():
            h, w = self.pooled
            mass = self.weights.detach().pow(2).reshape(-1, h, w) + 1e-12
            ys, xs = torch.linspace(-1, 1, h), torch.linspace(-1, 1, w)
            total = mass.sum((1, 2))
            x = (mass.sum(1) * xs).sum(1) / total
            y = (mass.sum(2) * ys).sum(1) / total
            return torch.stack([x, y], 1).cpu()

    def forward(self, video, behavior):
        b, t, h, w = video.shape
        x = torch.nn.functional.avg_pool2d(((video - 128.0) / 64.0).reshape(b * t, 1, h, w), POOL)
        drive = x.reshape(b, t, -1) @ self.weights.T + self.bias  # (B, T, neurons)
        return torch.nn.functional.softplus(drive).transpose(1, 2)


register_encoder(KIND, LinearEncoder)

QUICK = TrainConfig(max_epochs=2, steps_per_epoch=3, batch_size=2, clip_frames=30, compile=False,
                    mixed_precision=False, device="cpu")


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    from movie_reconstruction.io.sensorium import read_sensorium

    return read_sensorium(tiny_recording(tmp_path_factory.mktemp("registry") / "recording"))


# ------------------------------------------------------------------------------ public API
def test_a_kind_from_outside_the_package_trains_saves_reloads_and_reconstructs(recording, tmp_path):
    assert KIND in encoder_kinds() and encoder_kinds()[0] == BUILTIN_KIND
    torch.manual_seed(0)
    result = run(train_encoder(recording, "fast", QUICK, device="cpu", kind=KIND))
    model = result.encoder
    assert type(model) is LinearEncoder and isinstance(model, EncoderModel)
    assert len(result.history) == 3 and np.isfinite([r["loss"] for r in result.history[1:]]).all()

    path = save_encoder(model, tmp_path / "toy")
    assert json.loads((path / "config.json").read_text())["encoder"]["kind"] == KIND
    loaded = load_encoder(path, recording)
    assert type(loaded) is LinearEncoder and loaded.checkpoint_path == path
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value.cpu()), name

    assert np.isfinite(evaluate_encoder(loaded, recording, "test")["single_trial"])

    trials = [recording.trial(int(i)) for i in recording.indices("test")]
    config = ReconstructionConfig(iterations=6, early_stopping=False, blur_sigma=None)
    result = run(reconstruct([loaded], trials, config, device="cpu"))
    assert result.movies.shape == (len(trials), *trials[0].video.shape)
    assert np.isfinite(result.movies).all() and not np.allclose(result.movies, config.start_grey)
    assert result.loss_history[-1] < result.loss_history[0]


def test_the_builtin_kind_is_named_in_new_checkpoints_and_assumed_in_old_ones(recording, tmp_path):
    torch.manual_seed(1)
    encoder = Encoder(recording.n_neurons, recording.frame_shape, recording.behavior_channels,
                      neuron_ids=recording.neurons.ids).eval()
    new = save_encoder(encoder, tmp_path / "new")
    assert json.loads((new / "config.json").read_text())["encoder"]["kind"] == BUILTIN_KIND
    old = _save_the_old_way(encoder, tmp_path / "old")
    assert "kind" not in json.loads((old / "config.json").read_text())["encoder"]
    loaded = load_encoder(old, recording)
    assert type(loaded) is Encoder
    for name, value in encoder.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name


def test_the_builtin_kinds_training_knobs_sit_behind_its_param_groups(recording):
    from movie_reconstruction.model import load_core_weights

    core, _ = load_core_weights("bundled")
    frozen = QUICK.replace(core_lr_scale=0.0)
    model = run(train_encoder(recording, "fast", frozen, device="cpu", init_core="bundled")).encoder
    for name, value in core.items():  # frozen: weights and normalisation statistics as pretrained
        assert torch.equal(model.core.state_dict()[name], value), name
    groups = model.param_groups(QUICK.replace(core_lr_scale=0.5, rf_offset_lr_scale=0.25))
    lr = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert lr[id(model.readout.mu_offset)] == pytest.approx(QUICK.lr * 0.25)
    assert all(lr[id(p)] == pytest.approx(QUICK.lr * 0.5) for p in model.core.parameters())
    assert model.train().core.training  # the core is trainable again, so it follows train()


def _save_the_old_way(encoder, path: Path) -> Path:
    """A checkpoint exactly as ``save_encoder`` wrote it before encoder kinds: no ``kind`` anywhere."""
    from safetensors.torch import save

    from movie_reconstruction.model.checkpoint import CONFIG_FILE, FORMAT, FORMAT_VERSION, WEIGHTS_FILE, _canonical

    encoder_config = {k: v for k, v in encoder.config.items() if k != "kind"}
    ids = np.asarray(encoder.neuron_ids)
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "package_version": "0.1.0",
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "encoder": encoder_config,
              "neuron_ids": ids.tolist(), "neuron_ids_dtype": ids.dtype.str, "data_hash": None,
              "training_metrics": {}, "extra": {}}
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    weights = save(state, metadata={"format": FORMAT, "config_sha256": hashlib.sha256(_canonical(config)).hexdigest()})
    config["weights_sha256"] = hashlib.sha256(weights).hexdigest()
    path.mkdir()
    (path / WEIGHTS_FILE).write_bytes(weights)
    (path / CONFIG_FILE).write_text(json.dumps(config, indent=1))
    return path


# ------------------------------------------------------------------------------ the contract, checked
class _Incomplete(torch.nn.Module):
    """The toy's parameters and shapes, but no ``config`` and no ``readout_positions``."""

    def __init__(self, config):
        super().__init__()
        full = LinearEncoder.from_config(config)
        self.weights, self.bias = full.weights, full.bias
        self.frame_shape, self.n_neurons, self.behavior_channels = full.frame_shape, full.n_neurons, full.behavior_channels

    def forward(self, video, behavior):
        raise AssertionError("never called")


class _SavedAsIncomplete(LinearEncoder):
    kind = "toy-incomplete"


class _IncompleteFactory:
    build = staticmethod(LinearEncoder.build)

    @staticmethod
    def from_config(config, *, neuron_ids=None):
        return _Incomplete(config)


def test_loading_names_the_checkpoint_and_what_the_encoder_lacks(recording, tmp_path):
    register_encoder("toy-incomplete", _IncompleteFactory, replace=True)
    path = save_encoder(_SavedAsIncomplete(recording.n_neurons, recording.frame_shape, recording.behavior_channels),
                        tmp_path / "incomplete")
    with pytest.raises(InputError, match="lacks 'config', 'readout_positions'") as info:
        load_encoder(path)
    assert info.value.path == path


def test_unknown_kinds_and_models_outside_the_contract_are_refused(recording, tmp_path):
    class Unregistered(LinearEncoder):
        kind = "nobody-registered-this"

    model = Unregistered(recording.n_neurons, recording.frame_shape, recording.behavior_channels)
    with pytest.raises(ValueError, match="unknown encoder kind 'nobody-registered-this'.*toy-linear"):
        save_encoder(model, tmp_path / "never")
    assert not (tmp_path / "never").exists()
    with pytest.raises(ValueError, match="unknown encoder kind 'nobody-registered-this'"):
        run(train_encoder(recording, "fast", QUICK, device="cpu", kind="nobody-registered-this"))
    with pytest.raises(TypeError, match="Linear lacks 'frame_shape', 'n_neurons', 'behavior_channels', 'config', "
                                        "'readout_positions'"):
        run(reconstruct(torch.nn.Linear(2, 2), [recording.trial(0)]))
    with pytest.raises(ValueError, match="already registered"):
        register_encoder(KIND, Unregistered)
    with pytest.raises(TypeError, match="build"):
        register_encoder("half-a-factory", type("NoBuild", (), {"from_config": staticmethod(lambda c: None)}))


# ------------------------------------------------------------------------------ the loss table
def test_the_loss_table_is_what_training_and_reconstruction_use():
    from movie_reconstruction.losses import get_loss, loss_names, poisson_nll, register_loss

    assert loss_names()[:2] == ("poisson", "mse")
    rates = torch.tensor([[[0.5, 2.0], [1.0, 0.0]]])
    responses = torch.tensor([[[1.0, 0.0], [3.0, 0.0]]])
    expected = (0.5 - np.log(0.5 + 1e-6) + 2.0 + 1.0 - 3 * np.log(1.0 + 1e-6) + 0.0) / 4
    assert get_loss("poisson")(rates, responses).item() == pytest.approx(expected, rel=1e-6)
    assert get_loss("mse")(rates, responses).item() == pytest.approx((0.25 + 4 + 4 + 0) / 4)
    from movie_reconstruction.reconstruct import optimiser

    assert optimiser.poisson_nll is poisson_nll  # the windowed baseline and the mask use the same one
    with pytest.raises(ValueError, match="unknown loss 'nope'; known: poisson, mse"):
        ReconstructionConfig(loss="nope")
    with pytest.raises(ValueError, match="already registered"):
        register_loss("poisson", lambda r, y: (r - y).abs().mean(dim=(1, 2)))
    assert get_loss("poisson").function is poisson_nll


def test_reconstruction_follows_the_configured_loss(recording):
    from movie_reconstruction.losses import mean_squared_error

    torch.manual_seed(2)
    model = Encoder(recording.n_neurons, recording.frame_shape, recording.behavior_channels,
                    neuron_ids=recording.neurons.ids).eval()
    trial = recording.trial(int(recording.indices("test")[0]))
    config = ReconstructionConfig(iterations=1, early_stopping=False, loss="mse")
    result = run(reconstruct([model], [trial], config, device="cpu"))
    with torch.no_grad():
        grey = torch.full((1, *trial.video.shape), config.start_grey)
        rates = model(grey, torch.from_numpy(np.array(trial.behavior))[None])
        first = mean_squared_error(rates, torch.from_numpy(np.array(trial.responses))[None]).item()
    assert result.loss_history[0] == pytest.approx(first, rel=1e-5)


# ------------------------------------------------------------------------------ plugins and presets
def test_plugins_are_only_modules_named_explicitly(monkeypatch):
    from movie_reconstruction.plugins import ENVIRONMENT_VARIABLE, load_plugins, use_plugins

    with pytest.raises(InputError, match="'../evil.py' is not a module name"):
        load_plugins(["../evil.py"])
    with pytest.raises(InputError, match="could not import plugin module 'no_such_module_here'"):
        load_plugins(["no_such_module_here"])
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, "json")
    use_plugins([PLUGIN])
    assert os.environ[ENVIRONMENT_VARIABLE] == f"json,{PLUGIN}"  # processes started from here import it too


def test_presets_are_listed_once():
    from movie_reconstruction.cli import build_parser
    from movie_reconstruction.model.config import PRESETS

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    (preset,) = [a for a in train._actions if a.dest == "preset"]
    assert tuple(preset.choices) == PRESETS


# ------------------------------------------------------------------------------ the command line
def _movie_recon(*args, plugins_in_environment=False):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), env.get("PYTHONPATH", "")) if p)
    env.pop("MOVIE_RECON_PLUGINS", None)
    if plugins_in_environment:
        env["MOVIE_RECON_PLUGINS"] = PLUGIN
    return subprocess.run([sys.executable, "-m", "movie_reconstruction.cli", *args, "--scheduler", "none",
                           "--device", "cpu", "-q"], env=env, capture_output=True, text=True, timeout=600)


def test_the_command_line_trains_and_reconstructs_with_a_plugin_kind(tmp_path, capsys):
    from movie_reconstruction.cli import EXIT_INPUT, main
    from movie_reconstruction.results import ResultsFolder, load_results

    results = ResultsFolder.create(tmp_path / "results")
    tiny_recording(results.recording_dir)
    for option, problem in (("--encoder-kind", "unknown encoder kind 'nope'"), ("--loss", "unknown loss 'nope'")):
        assert main(["train", str(results.path), option, "nope", "--scheduler", "none", "-q"]) == EXIT_INPUT
        assert problem in capsys.readouterr().err
    train = _movie_recon("train", str(results.path), "--plugin", PLUGIN, "--encoder-kind", KIND, "--loss", "mse",
                         "--preset", "fast", "--models", "1", "--epochs", "1")
    assert train.returncode == 0, train.stderr
    checkpoint = results.model_dir(0)
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["encoder"]["kind"] == KIND and config["training_metrics"]["training"]["loss"] == "mse"
    assert type(load_encoder(checkpoint)) is LinearEncoder

    args = ["reconstruct", str(results.path), "--iterations", "3", "--no-controls"]
    unknown = _movie_recon(*args)  # without the plugin the kind is unknown: one line naming it and the checkpoint
    assert unknown.returncode == 1 and len(unknown.stderr.strip().splitlines()) == 1, unknown.stderr
    assert f"unknown encoder kind '{KIND}'" in unknown.stderr and "model_0" in unknown.stderr
    done = _movie_recon(*args, plugins_in_environment=True)
    assert done.returncode == 0, done.stderr
    # train --loss does not carry over to reconstruct: said, not silently switched
    assert "trained with the mse loss but the pixels are optimised for poisson; pass --loss mse" in done.stderr
    matched = _movie_recon(*args, "--loss", "mse", "--overwrite", plugins_in_environment=True)
    assert matched.returncode == 0 and "trained with" not in matched.stderr, matched.stderr
    trials = load_results(results.path).trials
    assert trials and all(np.isfinite(t.reconstruction).all() for t in trials)
