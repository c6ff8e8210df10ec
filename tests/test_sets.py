"""The ready sets shipped with the package (kerasdistill/sets): names, cards, bytes."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from kerasdistill import sets
from kerasdistill.config import RECIPE_NAMES
from kerasdistill.errors import DistillError
from tests.conftest import REPO_ROOT, assert_one_error, run_cli

CARDS = sets.catalogue()


def _run_results(card) -> dict:
    with open(os.path.join(REPO_ROOT, card.run, "results.json")) as f:
        return json.load(f)


def test_the_catalogue_has_at_least_six_sets_each_from_a_committed_run():
    assert len(CARDS) >= 6
    assert len({card.name for card in CARDS}) == len(CARDS)
    for card in CARDS:
        results = _run_results(card)
        # The card's figures are the run's, read from the set the run exported.
        assert card.metadata["test_accuracy_mean"] == results["test_accuracy_mean"]
        assert card.metadata["test_accuracy_std"] == results["test_accuracy_std"]
        assert card.models == len(results["test_accuracies"]) == 20
        assert card.budget in ("paper", "cpu") and card.budget_note.startswith(
            "the paper's budget" if card.budget == "paper" else "the cpu budget, not the paper's")
        assert card.recipe in RECIPE_NAMES
        assert card.name.split("/")[1] == f"n{card.size}"


def test_a_ready_set_loads_by_name_and_a_folder_wins_over_a_name(tmp_path, monkeypatch):
    from kerasdistill import load_distilled
    distilled = load_distilled("mnist/n100/ld")
    assert len(distilled) == 100 and distilled.metadata["target"] == "mnist"
    monkeypatch.chdir(tmp_path)
    os.makedirs("mnist/n100/ld")  # a folder of that name here, not a set: refused as such
    with pytest.raises(DistillError, match="is not a distilled set"):
        load_distilled("mnist/n100/ld")


def test_an_unknown_name_gives_one_error_listing_the_known_ones():
    from kerasdistill import load_distilled
    with pytest.raises(DistillError) as error:
        load_distilled("mnist/n100/nothing")
    assert "mnist/n100/nothing is not a folder nor a ready set's name" in str(error.value)
    for card in CARDS:
        assert card.name in str(error.value)
    result = run_cli("experiments.sets", "--name=mnist/n7")
    assert_one_error(result, "mnist/n7 is not a folder nor a ready set's name")


def test_the_sets_command_lists_every_card_and_shows_one():
    listing = run_cli("experiments.sets")
    assert listing.returncode == 0, listing.stderr[-2000:]
    rows = [line for line in listing.stdout.splitlines() if line.startswith("| ")][1:]
    assert [row.split(" | ")[0][2:] for row in rows] == [card.name for card in CARDS]
    horizon = next(card for card in CARDS if card.name == "mnist/n100/horizon")
    assert f"{horizon.accuracy_mean:.2f} +- {horizon.accuracy_std:.2f} (20 models)" in \
        listing.stdout
    shown = run_cli("experiments.sets", "--name=mnist/n100/horizon")
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "the cpu budget, not the paper's" in shown.stdout
    assert horizon.run in shown.stdout


def test_the_card_check_holds_for_the_runs_models_and_fails_for_a_changed_number():
    """check_card with the run's own first three test models: within the tolerance for
    the card as shipped, outside it once the card's accuracy moves beyond the tolerance
    (3 points for MNIST n = 100's horizon set, whose tolerance is 1.6)."""
    for card in CARDS:
        accuracies = _run_results(card)["test_accuracies"][:3]
        observed = sets.check_card(card, accuracies)
        beyond = card.tolerance(3) + abs(observed - card.accuracy_mean) + 0.1
        if card.name == "mnist/n100/horizon":
            assert beyond < 3.0
            beyond = 3.0
        for shift in (-beyond, beyond):
            changed = dataclasses.replace(card, metadata={
                **card.metadata,
                "test_accuracy_mean": card.metadata["test_accuracy_mean"] + shift / 100})
            with pytest.raises(DistillError, match="retrained models score"):
                sets.check_card(changed, accuracies)


@pytest.mark.parametrize("name", [card.name for card in CARDS])
def test_retrained_models_score_the_card(name, shared_data_dir):
    """Three fresh models per set, trained with its recipe by experiments.train's trainer
    (model.fit), score its card's accuracy within the stated tolerance."""
    from kerasdistill.evaluation.train_distilled import check_ready_set
    card = sets.find_set(name)
    _skip_without_data(card, shared_data_dir)
    check_ready_set(card, 3, shared_data_dir)


@pytest.mark.parametrize("name", [card.name for card in CARDS])
def test_shipped_files_are_what_export_writes_from_the_run(name, shared_data_dir, tmp_path):
    from kerasdistill.export.run_export import export_run
    card = sets.find_set(name)
    _skip_without_data(card, shared_data_dir)
    export_run(os.path.join(REPO_ROOT, card.run), str(tmp_path / "set"), shared_data_dir,
               plots_dir="")
    written = sorted(os.listdir(tmp_path / "set"))
    assert sorted(os.listdir(card.path)) == written
    for file_name in written:
        with open(tmp_path / "set" / file_name, "rb") as exported, \
                open(os.path.join(card.path, file_name), "rb") as shipped:
            assert exported.read() == shipped.read(), (
                f"{name}/{file_name} differs from what experiments.export writes from "
                f"{card.run}: rebuild the sets (python -m experiments.sets --build)")


def _skip_without_data(card, data_dir):
    needed = {"kmnist": "kmnist-test-imgs.npz"}.get(card.metadata["target"],
                                                   f"{card.metadata['target']}.npz")
    for file_name in {needed, f"{card.metadata['source']}.npz"} - {"kmnist.npz"}:
        if not os.path.exists(os.path.join(data_dir, file_name)):
            pytest.skip(f"{file_name} is not in {data_dir}")


def test_train_takes_a_ready_sets_name(shared_data_dir, tmp_path):
    result = run_cli("experiments.train", "--distilled=mnist/n10/ld", "--repetitions=1",
                     f"--data_dir={shared_data_dir}", "--verbose=false",
                     f"--output_json={tmp_path}/results.json")
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "results.json") as f:
        results = json.load(f)
    assert results["distilled"] == "mnist/n10/ld" and results["target"] == "mnist"
    assert 0.3 < results["test_accuracy_mean"] < 0.8
