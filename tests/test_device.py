"""Device choice: the order CUDA, MPS, CPU for "auto", and explicit requests honoured or refused.

What the machine offers is monkeypatched, so every branch runs on any machine.
"""

import pytest

from movie_reconstruction import InputError

torch = pytest.importorskip("torch")


@pytest.fixture
def machine(monkeypatch):
    """Set what this 'machine' offers: ``machine(cuda=..., mps=...)``."""

    def offer(*, cuda: bool, mps: bool):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)

    return offer


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"),
    [(True, True, "cuda"), (True, False, "cuda"), (False, True, "mps"), (False, False, "cpu")],
)
@pytest.mark.parametrize("preference", ["auto", None, ""])
def test_auto_prefers_cuda_then_mps_then_cpu(machine, cuda, mps, expected, preference):
    from movie_reconstruction.device import pick_device

    machine(cuda=cuda, mps=mps)
    assert pick_device(preference) == torch.device(expected)


def test_auto_without_an_mps_backend_falls_back_to_cpu(machine, monkeypatch):
    """Older torch builds have no torch.backends.mps at all."""
    from movie_reconstruction.device import pick_device

    machine(cuda=False, mps=True)
    monkeypatch.setattr(torch.backends, "mps", None)  # as getattr(torch.backends, "mps", None) then finds
    assert pick_device("auto") == torch.device("cpu")


def test_explicit_requests_are_honoured_when_available(machine):
    from movie_reconstruction.device import pick_device

    machine(cuda=True, mps=True)
    # an explicit choice wins over the auto order, whatever else the machine has
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("cuda") == torch.device("cuda")
    assert pick_device("cuda:1") == torch.device("cuda", 1)
    assert pick_device("mps") == torch.device("mps")


def test_explicit_requests_for_missing_hardware_are_refused(machine):
    from movie_reconstruction.device import pick_device

    machine(cuda=False, mps=False)
    assert pick_device("cpu") == torch.device("cpu")
    with pytest.raises(InputError, match="'cuda' was asked for, but CUDA is not available"):
        pick_device("cuda")
    with pytest.raises(InputError, match="'cuda:1' was asked for, but CUDA is not available"):
        pick_device("cuda:1")
    with pytest.raises(InputError, match="'mps' was asked for, but MPS is not available"):
        pick_device("mps")
    machine(cuda=True, mps=False)
    with pytest.raises(InputError, match="MPS is not available"):
        pick_device("mps")
    machine(cuda=False, mps=True)
    with pytest.raises(InputError, match="CUDA is not available"):
        pick_device("cuda")


def test_unknown_device_names_are_refused():
    from movie_reconstruction.device import pick_device

    for name in ("gpu0", "nvidia", "cuda:x"):
        with pytest.raises(InputError, match=f"unknown device '{name}'; use auto, cpu, cuda, cuda:N or mps"):
            pick_device(name)
