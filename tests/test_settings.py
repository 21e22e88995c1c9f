"""The settings schema: one description per setting, from which the command line's options, the
settings file and docs/settings.md are made."""

from __future__ import annotations

from pathlib import Path

import pytest

from movie_reconstruction.cli import build_parser
from movie_reconstruction.cli_options import settings_from_args
from movie_reconstruction.errors import InputError
from movie_reconstruction.settings import PipelineSettings, read_settings_file, setting_infos, settings_table

DOCS = Path(__file__).resolve().parents[1] / "docs" / "settings.md"


def _parse(*argv):
    args = build_parser().parse_args(list(argv))
    return settings_from_args(args)


def test_docs_settings_table_is_made_from_the_schema():
    assert settings_table() in DOCS.read_text(encoding="utf-8"), "regenerate: python -m movie_reconstruction.settings"


@pytest.mark.parametrize("command,stages", [("reconstruct", ("reconstruct", "controls")), ("train", ("train",)),
                                            ("extract", ("extract",)), ("build", ("build",))])
def test_each_command_offers_every_setting_of_its_stages(command, stages):
    sub = build_parser()._subparsers._group_actions[0].choices[command]
    dests = {action.dest for action in sub._actions}
    wanted = {info.name for info in setting_infos(stages)} - ({"mask_method"} if command == "reconstruct" else set())
    assert wanted <= dests, sorted(wanted - dests)


def test_options_reach_the_nested_reconstruction_settings():
    settings = _parse("reconstruct", "results", "--learning-rate", "3", "--jitter", "2", "--no-early-stopping",
                      "--trials", "3,7", "--blur-sigma", "none", "--optimizer", "momentum")
    r = settings.reconstruction
    assert (r.learning_rate, r.jitter, r.early_stopping, r.blur_sigma, r.optimizer) == (3.0, 2, False, None, "momentum")
    assert settings.trials == (3, 7)
    unchanged = _parse("reconstruct", "results")
    assert unchanged == PipelineSettings()


def test_out_of_range_values_are_refused_with_the_settings_name(capsys):
    with pytest.raises(InputError, match="learning_rate must be at least"):
        _parse("reconstruct", "results", "--learning-rate", "-2")
    with pytest.raises(SystemExit):
        _parse("reconstruct", "results", "--optimizer", "sgd")  # not a choice: a usage error
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(ValueError, match="n_models must be at least 1"):
        PipelineSettings(n_models=0)


def test_a_settings_file_sets_defaults_and_options_win(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('n_models = 4\ncontrol_variants = ["time-reversed"]\n[reconstruction]\niterations = 321\n'
                    'jitter = 2\n[training]\nbatch_size = 3\n')
    settings = _parse("reconstruct", "results", "--settings", str(path), "--iterations", "50")
    assert settings.reconstruction.iterations == 50 and settings.reconstruction.jitter == 2
    assert settings.n_models == 4 and settings.control_variants == ("time-reversed",)
    assert settings.training.batch_size == 3 and settings.training.max_epochs == 40  # the preset's, changed


@pytest.mark.parametrize("text,problem", [
    ("n_modles = 4\n", "unknown setting 'n_modles'"),
    ("[reconstruction]\nlearning_rat = 1\n", "unknown setting 'reconstruction.learning_rat'"),
    ("[training]\nbatchsize = 3\n", "unknown \\[training\\] setting"),
    ("[reconstruction]\niterations = 0\n", "iterations must be at least 1"),
    ("n_models = [\n", "cannot read the settings file"),
])
def test_a_bad_settings_file_is_one_line_naming_it(tmp_path, text, problem):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(InputError, match=problem) as caught:
        read_settings_file(path)
    assert "bad.toml" in str(caught.value) and "\n" not in str(caught.value)
