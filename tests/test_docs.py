"""Every data-set option is documented where users look, and the READMEs cannot drift."""

from pathlib import Path

import pytest

from omnissl.cli import main
from omnissl.docs import arg_docs, dataset_markdown, datasets_of, option_rows, readme_section
from omnissl.plugins import get_registry

ROOT = Path(__file__).resolve().parents[1]
READMES = sorted(ROOT.glob("plugins/omnissl-*/README.md"))


def test_every_plugin_readme_is_found():
    assert {p.parent.name for p in READMES} >= {"omnissl-eeg", "omnissl-image", "omnissl-audio", "omnissl-ct",
                                                 "omnissl-molecule", "omnissl-splat"}


@pytest.mark.parametrize("readme", READMES, ids=lambda p: p.parent.name)
def test_readme_tables_match_the_data_sets(readme):
    registry = get_registry()
    expected = dataset_markdown(registry, datasets_of(registry, readme.parent.name))
    assert readme_section(readme.read_text()) == expected, (
        f"{readme} does not list its data sets' options as they are: run `python -m omnissl.docs`")


@pytest.mark.parametrize("name", get_registry().names("datasets"))
def test_every_option_has_a_meaning(name):
    factory = get_registry().get("datasets", name)
    undocumented = [option for option, _, _, meaning in option_rows(factory) if not meaning]
    assert not undocumented, f"data set {name!r}: document {undocumented} in its docstring's Args: section"


def test_args_sections_with_shared_and_wrapped_entries():
    class Example:
        """One line.

        Args:
            root: the folder,
                over two lines.
            a, b,
                c: shared by three.
            d (int): typed.

        Returns:
            nothing: not an argument.
        """

    assert arg_docs(Example) == {"root": "the folder, over two lines.", "a": "shared by three.",
                                 "b": "shared by three.", "c": "shared by three.", "d": "typed."}


def test_datasets_command_lists_and_shows_options(capsys):
    assert main(["datasets"]) == 0
    listing = capsys.readouterr().out
    assert "digits" in listing and "eeg_folder" in listing
    assert main(["datasets", "numpy"]) == 0
    shown = capsys.readouterr().out
    assert "val_fraction" in shown and "float (>= 0 and < 1) = 0.1" in shown
    assert main(["datasets", "numpyy"]) == 2
    assert "Did you mean 'numpy'" in capsys.readouterr().err


def test_shared_options_are_documented_once_and_followed():
    from omnissl_audio.datasets import AudioFolder, AudioManifest
    from omnissl_eeg.datasets import EEGFolder, EEGManifest

    manifest, folder = arg_docs(AudioManifest), arg_docs(AudioFolder)
    assert manifest["frame_shift_ms"] == folder["frame_shift_ms"] == "hop between frames."
    assert manifest["path_column"] == "column holding each clip's audio file."  # its own entry
    assert arg_docs(EEGManifest)["reject_by_annotation"] == arg_docs(EEGFolder)["reject_by_annotation"]
