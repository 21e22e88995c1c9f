import pytest

from movie_reconstruction import InputError

torch = pytest.importorskip("torch")


def test_device_choice_and_bad_requests():
    from movie_reconstruction.device import pick_device

    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(InputError, match="unknown device 'gpu0'"):
        pick_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            pick_device("cuda")
