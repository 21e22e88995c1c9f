"""Reconstruction on a tiny simulated population whose encoder is known exactly.

The toy encoder meets the encoder contract: a causal temporal filter, localised linear
spatial filters (one per neuron), a softplus and a running-dependent gain. Responses are
Poisson draws from its rates, so reconstruction through the same encoder must recover
the movie inside the covered region, and clearly better than any control.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from movie_reconstruction.errors import InputError  # noqa: E402
from movie_reconstruction.progress import Progress, run  # noqa: E402
from movie_reconstruction.reconstruct import Reconstruction, ReconstructionConfig, reconstruct  # noqa: E402
from movie_reconstruction.reconstruct.controls import run_controls  # noqa: E402
from movie_reconstruction.reconstruct.ensemble import combine_member_movies  # noqa: E402
from movie_reconstruction.reconstruct.mask import (  # noqa: E402
    MaskConfig,
    TransparencyMask,
    learn_mask,
    load_mask,
    mask_for_model,
    mask_from_readout,
    save_mask,
)
from movie_reconstruction.reconstruct.metrics import (  # noqa: E402
    frame_correlation,
    masked_correlation,
    pixel_correlation_map,
    response_check,
    ssim,
)
from movie_reconstruction.recording import Trial  # noqa: E402

H, W, T = 12, 16, 60
N_NEURONS = 240
KERNEL = (0.5, 0.4, 0.1, -0.2, -0.15)  # newest first


class ToyEncoder(torch.nn.Module):
    """Causal toy encoder meeting the contract (frames 12x16, behaviour: running)."""

    def __init__(self, n_neurons=N_NEURONS, seed=0, rf_region=(2, 10, 3, 13)):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        r0, r1, c0, c1 = rf_region
        cy = r0 + (r1 - r0) * torch.rand(n_neurons, generator=g)
        cx = c0 + (c1 - c0) * torch.rand(n_neurons, generator=g)
        yy, xx = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
        envelope = torch.exp(-((yy[None] - cy[:, None, None]) ** 2 + (xx[None] - cx[:, None, None]) ** 2) / (2 * 1.5**2))
        weights = torch.randn(n_neurons, H, W, generator=g) * envelope
        weights = weights / weights.flatten(1).norm(dim=1)[:, None, None]
        self.spatial = torch.nn.Parameter(weights.reshape(n_neurons, H * W))
        self.bias = torch.nn.Parameter(torch.full((n_neurons,), 0.5))
        self.register_buffer("kernel", torch.tensor(KERNEL, dtype=torch.float32))
        self.register_buffer("centres", torch.stack([cx / (W - 1) * 2 - 1, cy / (H - 1) * 2 - 1], 1))
        self.frame_shape = (H, W)
        self.n_neurons = n_neurons
        self.behavior_channels = ("running",)
        self.config = {"kind": "toy", "seed": seed}

    def readout_positions(self):
        return self.centres

    def forward(self, video, behavior):
        b, t = video.shape[:2]
        x = (video - 128.0) / 64.0
        drive = x.reshape(b, t, -1) @ self.spatial.T  # (B, T, N)
        k = len(self.kernel)
        padded = torch.cat([drive[:, :1].expand(b, k - 1, -1), drive], 1)
        filtered = sum(self.kernel[j] * padded[:, k - 1 - j : k - 1 - j + t] for j in range(k))
        gain = 1 + 0.2 * torch.tanh(behavior[:, 0] / 10)  # (B, T)
        rates = torch.nn.functional.softplus(2.0 * filtered + self.bias) * gain[:, :, None]
        return rates.transpose(1, 2)


def smooth_movie(rng, t=T):
    from scipy.ndimage import gaussian_filter

    raw = rng.normal(size=(t, H, W))
    movie = gaussian_filter(raw, sigma=(2.0, 1.5, 1.5), mode="wrap")
    movie = (movie - movie.mean()) / movie.std() * 50 + 128
    return np.clip(movie, 0, 255).astype(np.float32)


def make_trials(model, n_trials=4, seed=1, gain=4.0, t=T):
    """Movies, running speed and Poisson responses (counts / gain) drawn from the toy's rates."""
    rng = np.random.default_rng(seed)
    trials = []
    for i in range(n_trials):
        video = smooth_movie(rng, t)
        running = np.clip(rng.normal(5, 5, size=t), 0, None).astype(np.float32)
        with torch.no_grad():
            rates = model(torch.from_numpy(video)[None], torch.from_numpy(running)[None, None])[0].numpy()
        responses = (rng.poisson(rates * gain) / gain).astype(np.float32)
        trials.append(Trial(video, responses, running[None], ("running",), i, "test", 30.0))
    return trials


@pytest.fixture(scope="module")
def toy():
    torch.manual_seed(0)
    model = ToyEncoder()
    trials = make_trials(model)
    mask = mask_for_model(model, sigma_px=2.0, eval_fraction=0.3)
    return model, trials, mask


FAST = ReconstructionConfig(iterations=60, learning_rate=6.0, min_iterations=20, preview_every=5)
DROP = 10


def _scores(result, trials, mask, drop=DROP):
    return np.array([masked_correlation(m, t.video, mask, drop_frames=drop) for m, t in zip(result.movies, trials)])


def test_reconstruction_recovers_movie_and_beats_shuffled(toy):
    model, trials, mask = toy
    result = run(reconstruct(model, trials, FAST, mask=mask))
    assert isinstance(result, Reconstruction)
    assert result.movies.shape == (len(trials), T, H, W)
    assert result.movies.min() >= 0 and result.movies.max() <= 255
    real = _scores(result, trials, mask)
    shuffled = np.array(
        [masked_correlation(result.movies[(i + 1) % len(trials)], t.video, mask, drop_frames=DROP) for i, t in enumerate(trials)]
    )
    assert real.mean() > 0.6, real
    assert real.mean() > shuffled.mean() + 0.4, (real, shuffled)
    # the loss went down and pixels outside the update mask were never touched
    assert result.loss_history[-1] < result.loss_history[0]
    outside = ~(mask.alpha >= 0.5)
    assert np.allclose(result.member_movies[..., outside], FAST.start_grey)


def test_deterministic_for_a_seed(toy):
    model, trials, mask = toy
    config = dataclasses.replace(FAST, iterations=15, early_stopping=False, start_noise=5.0, seed=3)
    a = run(reconstruct(model, trials[:2], config, mask=mask))
    b = run(reconstruct(model, trials[:2], config, mask=mask))
    c = run(reconstruct(model, trials[:2], dataclasses.replace(config, seed=4), mask=mask))
    assert np.array_equal(a.movies, b.movies)
    assert np.array_equal(a.loss_history, b.loss_history)
    assert not np.array_equal(a.movies, c.movies)


def test_reusing_fixed_parts_changes_nothing_but_the_work(toy, monkeypatch):
    from movie_reconstruction.model import Encoder, EncoderConfig

    _, trials, _ = toy
    torch.manual_seed(0)
    architecture = EncoderConfig(channels=8, blocks=1, stem_kernel=5, block_kernel=3, temporal_kernel=5)
    encoders = [Encoder(N_NEURONS, (H, W), ("running",), architecture).eval() for _ in range(2)]
    alpha = np.zeros((H, W), np.float32)
    alpha[4:8, 5:10] = 1.0  # small enough that the core's fixed surround pays
    prepared = []
    original = Encoder.prepare
    monkeypatch.setattr(Encoder, "prepare", lambda self, *a: prepared.append(original(self, *a)) or prepared[-1])
    # jitter off: the update it moves reaches a pixel further, where this tiny frame's surround no longer pays
    config = dataclasses.replace(FAST, iterations=8, early_stopping=False, start_noise=5.0, batch_size=2, jitter=0)
    reused = run(reconstruct(encoders, trials[:3], config, mask=alpha))
    assert len(prepared) == 4  # two members, two batches
    assert all(p.surround is not None and p.read_points.sparse_frames == p.read_points.grid.shape[0] for p in prepared)
    recomputed = run(reconstruct(encoders, trials[:3], dataclasses.replace(config, reuse_fixed_parts=False), mask=alpha))
    assert len(prepared) == 4
    np.testing.assert_allclose(reused.member_movies, recomputed.member_movies, atol=0.05)
    np.testing.assert_allclose(reused.loss_history, recomputed.loss_history, rtol=1e-5)
    assert reused.loss_history[-1] < reused.loss_history[0]  # the pixels did move


def test_antialiasing_helpers():
    from movie_reconstruction.reconstruct.antialias import blur_gradient, grow, jittered, shift_frames

    frames = torch.zeros(1, 2, 5, 6)
    frames[..., 2, 3] = 1.0
    assert shift_frames(frames, 1, -2)[0, 0, 3, 1] == 1.0 and shift_frames(frames, 1, -2).sum() == 2.0
    assert shift_frames(frames, 0, 0) is frames
    assert shift_frames(frames, -3, 0).sum() == 0.0  # moved out of the frame, zeros came in
    start = torch.full((1, 2, 5, 6), 7.0)
    seen = []
    jittered(seen.append, start, 1, 1)(start + frames)
    assert seen[0][0, 0, 3, 4] == 8.0 and (seen[0] == 7.0).sum() == seen[0].numel() - 2
    changing = torch.zeros(5, 6, dtype=torch.bool)
    changing[2, 3] = True
    assert grow(changing, 1).sum() == 9 and grow(changing, 0) is changing
    rows, cols = np.indices((16, 16))
    checker = torch.from_numpy(np.where((rows + cols) % 2, 1.0, -1.0)).float()[None, None]
    smooth = torch.ones(1, 1, 16, 16)
    assert blur_gradient(checker, 1.0)[..., 4:12, 4:12].abs().max() < 1e-3  # the period-2 pattern is gone
    assert torch.allclose(blur_gradient(smooth, 1.0)[..., 4:12, 4:12], smooth[..., 4:12, 4:12])
    assert blur_gradient(checker, 0.0) is checker
    with pytest.raises(ValueError):
        ReconstructionConfig(jitter=-1)


def test_antialiasing_keeps_the_prepared_forward_exact(toy, monkeypatch):
    """A jittered update reaches one pixel beyond the update mask: the prepared pass must know."""
    from movie_reconstruction.model import Encoder, EncoderConfig

    _, trials, _ = toy
    torch.manual_seed(0)
    architecture = EncoderConfig(channels=8, blocks=1, stem_kernel=5, block_kernel=3, temporal_kernel=5)
    encoder = Encoder(N_NEURONS, (H, W), ("running",), architecture).eval()
    alpha = np.zeros((H, W), np.float32)
    alpha[5:7, 6:8] = 1.0  # small enough that the core's fixed surround pays even grown by the jitter
    prepared = []
    original = Encoder.prepare
    monkeypatch.setattr(Encoder, "prepare", lambda self, *a: prepared.append(original(self, *a)) or prepared[-1])
    config = dataclasses.replace(FAST, iterations=8, early_stopping=False, start_noise=5.0, jitter=1, gradient_blur=0.7)
    reused = run(reconstruct(encoder, trials[:2], config, mask=alpha))
    assert prepared and all(p.surround is not None for p in prepared)
    recomputed = run(reconstruct(encoder, trials[:2], dataclasses.replace(config, reuse_fixed_parts=False), mask=alpha))
    np.testing.assert_allclose(reused.member_movies, recomputed.member_movies, atol=0.05)
    np.testing.assert_allclose(reused.loss_history, recomputed.loss_history, rtol=1e-5)
    plain = run(reconstruct(encoder, trials[:2], dataclasses.replace(config, jitter=0, gradient_blur=0.0), mask=alpha))
    assert not np.allclose(plain.member_movies, reused.member_movies)  # the settings do something


def test_cancellation_stops_work_and_restores_model(toy):
    model, trials, mask = toy
    calls = {"n": 0}
    hook = model.register_forward_hook(lambda *args: calls.__setitem__("n", calls["n"] + 1))
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    frozen_before = [name for name, p in model.named_parameters() if not p.requires_grad]
    try:
        job = reconstruct(model, trials, dataclasses.replace(FAST, iterations=500, early_stopping=False), mask=mask)
        events = [next(job) for _ in range(3)]
        # parameters are frozen while pixels are optimised (only the pixel gradient is computed)
        assert not any(p.requires_grad for p in model.parameters())
        job.close()
        assert all(isinstance(e, Progress) and e.stage == "reconstruction" for e in events)
        assert events[0].preview is not None and events[0].preview.shape == (len(trials), T, H, W)
        assert calls["n"] == 3
        with pytest.raises(StopIteration):
            next(job)
        assert calls["n"] == 3
    finally:
        hook.remove()
    assert model.training  # state restored
    assert [name for name, p in model.named_parameters() if not p.requires_grad] == frozen_before
    assert any(p.requires_grad for p in model.parameters())
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    model.eval()


def test_early_stopping_on_plateau(toy):
    model, trials, mask = toy
    config = dataclasses.replace(FAST, iterations=400, patience=10, min_improvement=0.02, min_iterations=20)
    result = run(reconstruct(model, trials[:2], config, mask=mask))
    assert result.stopped_early
    assert result.iterations_run < 400


def test_ensemble_modes_and_neuron_subset(toy):
    model, trials, mask = toy
    other = ToyEncoder(seed=0)  # identical weights: a second member
    averaged = run(reconstruct([model, other], trials[:2], FAST, mask=mask))
    assert averaged.member_movies.shape[0] == 2
    gradients = run(reconstruct([model, other], trials[:2], dataclasses.replace(FAST, ensemble="average_gradients"), mask=mask))
    assert gradients.member_movies.shape[0] == 1
    assert _scores(gradients, trials[:2], mask).mean() > 0.5
    subset = np.arange(0, N_NEURONS, 8)
    few = run(reconstruct(model, trials[:2], FAST, mask=mask, neurons=subset))
    assert _scores(few, trials[:2], mask).mean() < _scores(averaged, trials[:2], mask).mean()


def test_momentum_optimiser_and_blur_option(toy):
    model, trials, mask = toy
    config = dataclasses.replace(FAST, optimizer="momentum", learning_rate=1.0, blur_sigma=None)
    result = run(reconstruct(model, trials[:2], config, mask=mask))
    assert np.array_equal(result.movies, np.clip(result.member_movies.mean(0), 0, 255))
    assert _scores(result, trials[:2], mask).mean() > 0.5


def test_bad_input_is_reported(toy):
    model, trials, mask = toy
    wrong = dataclasses.replace(trials[0], responses=trials[0].responses[:10])
    with pytest.raises(InputError, match="neurons"):
        run(reconstruct(model, wrong, FAST, mask=mask))
    no_running = dataclasses.replace(trials[0], behavior=trials[0].behavior, behavior_channels=("pupil",))
    with pytest.raises(InputError, match="running"):
        run(reconstruct(model, no_running, FAST, mask=mask))
    with pytest.raises(InputError, match="mask"):
        run(reconstruct(model, trials[0], FAST, mask=np.ones((3, 3))))
    with pytest.raises(ValueError):
        ReconstructionConfig(optimizer="lbfgs")


def test_save_and_load_roundtrip(toy, tmp_path):
    """Every field comes back: movies, members, losses, settings, mask, ids, counters and extras."""
    model, trials, mask = toy
    config = dataclasses.replace(FAST, iterations=5, optimizer="momentum", learning_rate=1.5, blur_sigma=0.7,
                                 pixel_range=(10.0, 240.0), early_stopping=False, seed=3)
    result = run(reconstruct([model, ToyEncoder(seed=1)], trials[:2], config, mask=mask.alpha * 0.8,
                             neurons=np.arange(200)))
    assert result.member_movies.shape[:2] == (2, 2) and result.extra["neurons"] == 200
    result.save(tmp_path / "rec")
    loaded = Reconstruction.load(tmp_path / "rec")
    fields = [f.name for f in dataclasses.fields(Reconstruction)]
    for name in fields:
        saved, back = getattr(result, name), getattr(loaded, name)
        if name in ("loss_history", "member_loss_history"):  # stored as float32
            assert back.shape == saved.shape, name
            np.testing.assert_allclose(back, saved, rtol=1e-6, err_msg=name)
        elif isinstance(saved, np.ndarray):
            assert back.dtype == saved.dtype and np.array_equal(back, saved), name
        else:
            assert type(back) is type(saved) and back == saved, name
    assert isinstance(loaded.config, ReconstructionConfig)


def test_controls_table_has_margins(toy):
    model, trials, mask = toy
    job = run_controls(model, trials, FAST, mask=mask, neuron_counts=(30, N_NEURONS), drop_frames=DROP)
    table = run(job)
    names = [row.name for row in table.controls]
    assert names == ["shuffled", "time-reversed", "circular shift", "grey-screen prior"]
    assert table.real > 0.6
    for row in table.controls:
        verdict = table.verdict_of(row.name)
        # four 50-frame trials (one 1 s block each) cannot reach p < 0.01, and the verdict says so;
        # but every trial favours the real reconstruction, so each p is the smallest the design allows
        assert verdict.verdict == "cannot tell", (row.name, verdict.sentence())
        for comparison in verdict.judged():
            assert comparison.p_value == comparison.min_p == 1 / 16, (row.name, comparison.measure)
        assert row.margin > 0.3
    (small, small_r), (full, full_r) = table.neuron_curve
    assert (small, full) == (30, N_NEURONS)
    assert small_r.mean() < full_r.mean()
    markdown = table.to_markdown()
    assert "shuffled" in markdown and "| 30 |" in markdown


def test_windowed_baseline_reconstructs(toy, monkeypatch, tmp_path):
    """The paper's loop, a benchmark baseline kept in benchmarks/ (reconstruct_speed.py runs it)."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from windowed_baseline import WindowedConfig, reconstruct_windowed, window_starts

    model, trials, mask = toy
    assert len(window_starts(300, 32, 8)) == 35
    config = WindowedConfig(iterations=40, window=16, stride=4, learning_rate=300.0)
    result = run(reconstruct_windowed(model, trials[:2], config, mask=mask))
    assert result.movies.shape == (2, T, H, W)
    assert _scores(result, trials[:2], mask).mean() > 0.4
    # its members are combined by the same step as the main loop's: mean, blur, clip
    expected = combine_member_movies(result.member_movies, config.blur_sigma, config.pixel_range)
    assert np.array_equal(result.movies, expected)
    result.save(tmp_path / "windowed")
    assert Reconstruction.load(tmp_path / "windowed", config_type=WindowedConfig).config == config


def test_metrics_follow_paper_convention():
    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 255, size=(40, H, W)).astype(np.float32)
    noisy = truth + rng.normal(0, 30, size=truth.shape)
    alpha = np.zeros((H, W), np.float32)
    alpha[3:9, 4:12] = 1.0
    expected = np.corrcoef(noisy[30:, 3:9, 4:12].ravel(), truth[30:, 3:9, 4:12].ravel())[0, 1]
    assert masked_correlation(noisy, truth, alpha) == pytest.approx(expected, rel=1e-9)
    assert masked_correlation(np.full_like(truth, 128), truth, alpha) == 0.0
    per_frame = frame_correlation(noisy, truth, alpha)
    assert np.isnan(per_frame[:30]).all() and (per_frame[30:] > 0.5).all()
    assert ssim(truth, truth, alpha) == pytest.approx(1.0)
    noisier = truth + rng.normal(0, 90, size=truth.shape)
    assert ssim(noisier, truth, alpha) < ssim(noisy, truth, alpha) < 0.99
    pixel_map = pixel_correlation_map(noisy, truth, drop_frames=0)
    assert pixel_map.shape == (H, W) and (pixel_map > 0.5).all()
    with pytest.raises(InputError):
        masked_correlation(noisy, truth, np.zeros((H, W)))


def test_response_check(toy):
    model, trials, mask = toy
    trial = trials[0]
    grey = np.full_like(trial.video, 128.0)
    check_true = response_check(model, trial.video, trial, drop_frames=DROP)
    check_grey = response_check(model, grey, trial, drop_frames=DROP)
    assert check_true.true_movie == pytest.approx(check_true.reconstructed)
    assert check_true.ratio == pytest.approx(1.0)
    assert check_grey.reconstructed < 0.5 * check_grey.true_movie


def test_masks_readout_estimate_learned_and_saved(toy, tmp_path):
    model, trials, _ = toy
    estimate = mask_from_readout(model.readout_positions(), (H, W), sigma_px=2.0, eval_fraction=0.25)
    assert estimate.evaluation.mean() == pytest.approx(0.25, abs=0.02)
    assert estimate.evaluation[6, 8] and not estimate.update[0, 0]  # centre of the covered region vs a corner
    path = save_mask(estimate, tmp_path / "encoder")
    assert path.name == "transparency_mask.safetensors"
    loaded = load_mask(tmp_path / "encoder")
    assert np.array_equal(loaded.alpha, estimate.alpha) and loaded.method == "readout"
    assert loaded.settings["sigma_px"] == 2.0
    with pytest.raises(InputError):
        load_mask(tmp_path / "missing")

    learned = run(learn_mask(model, trials, MaskConfig(steps=150, frames=40, learning_rate=0.05)))
    assert isinstance(learned, TransparencyMask) and learned.method == "learned"
    inside = learned.alpha[4:9, 5:12].mean()  # well inside the toy's receptive-field region
    outside = np.concatenate([learned.alpha[:, 0], learned.alpha[:, -1]]).mean()
    assert inside > 1.0 and outside < 0.2, (inside, outside)
    assert learned.evaluation[4:9, 5:12].mean() > 0.8 and not learned.update[:, 0].any()


def test_mask_saved_with_checkpoint_is_used(toy, tmp_path):
    model, trials, _ = toy
    folder = tmp_path / "encoder"
    folder.mkdir()
    saved = mask_from_readout(model.readout_positions(), (H, W), sigma_px=2.0, eval_fraction=0.2)
    save_mask(saved, folder)
    model.checkpoint_path = folder
    try:
        result = run(reconstruct(model, trials[:1], dataclasses.replace(FAST, iterations=2)))
    finally:
        del model.checkpoint_path
    assert np.array_equal(result.mask, saved.alpha)


def test_import_does_not_pull_torch():
    import subprocess
    import sys

    code = "import sys, movie_reconstruction.reconstruct.optimiser, movie_reconstruction.reconstruct.metrics; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_no_checkerboard_through_a_strided_encoder():
    """Issue 24: gradient descent through a stride-2 core paints a period-2 checkerboard; the
    jittered update does not. The encoder (untrained weights, stride-2 stem) reconstructs a smooth
    movie from its own rates, so every bit of grid texture is the method's."""
    from scipy.ndimage import gaussian_filter

    from movie_reconstruction.model import Encoder, EncoderConfig
    from movie_reconstruction.reconstruct.artifacts import artifact_index

    torch.manual_seed(0)
    height, width, frames = 24, 32, 50
    architecture = EncoderConfig(channels=8, blocks=1, stem_kernel=5, block_kernel=3, temporal_kernel=5, stride=2)
    encoder = Encoder(300, (height, width), ("running",), architecture).eval()
    with torch.no_grad():
        encoder.readout.features.normal_(0, 0.5)
        encoder.readout.mu_offset.uniform_(-0.6, 0.6)
    rng = np.random.default_rng(0)
    trials = []
    for i in range(2):
        movie = gaussian_filter(rng.normal(size=(frames, height, width)), (2, 2, 2), mode="wrap")
        movie = np.clip((movie - movie.mean()) / movie.std() * 40 + 128, 0, 255).astype(np.float32)
        running = np.full((1, frames), 5.0, np.float32)
        with torch.no_grad():
            rates = encoder(torch.from_numpy(movie)[None], torch.from_numpy(running)[None])[0].numpy()
        trials.append(Trial(movie, rates.astype(np.float32), running, ("running",), i, "test", 30.0))
    alpha = np.zeros((height, width), np.float32)
    alpha[4:20, 6:26] = 1.0

    def scores(config):
        result = run(reconstruct(encoder, trials, config, mask=alpha))
        return [(masked_correlation(m, t.video, alpha, drop_frames=DROP), artifact_index(m, t.video, alpha, drop_frames=DROP))
                for m, t in zip(result.movies, trials)]

    plain = ReconstructionConfig(iterations=40, early_stopping=False, blur_sigma=None, jitter=0)
    today = scores(plain)
    fixed = scores(dataclasses.replace(plain, jitter=1))
    # the method without jitter does paint the grid here (else this test could not catch it coming back)
    assert all(a.nyquist_share > 10 * a.stimulus_nyquist_share and a.artifact_index > 8 for _, a in today)
    for (r_today, _), (r, a) in zip(today, fixed):
        assert a.nyquist_share < 8 * a.stimulus_nyquist_share and a.artifact_index < 6
        assert r > r_today
