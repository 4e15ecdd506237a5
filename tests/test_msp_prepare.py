"""Manifests from the mini corpus: content, idempotence, and clear errors."""

import json
import logging
import os
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile

from data_prep.consensus import relabel_corpus
from data_prep.corpora import CorpusLayoutError, open_corpus
from data_prep.msp_prepare import PreparationError, main, prepare_msp_podcast
from ser.cli import EXIT_BAD_INPUT, run_command
from ser.emotions import EMOTIONS


def _snapshot(folder):
    return {
        path: os.stat(os.path.join(root, path)).st_mtime_ns
        for root, _, files in os.walk(folder)
        for path in files
    }


@pytest.fixture()
def corpus_copy(mini_corpus, tmp_path):
    """A private copy of the mini corpus that a test may damage."""
    return shutil.copytree(mini_corpus, tmp_path / "corpus")


def test_manifests_hold_the_right_turns(mini_corpus, tmp_path):
    before = _snapshot(mini_corpus)
    manifests = prepare_msp_podcast(mini_corpus, tmp_path / "prep", missing_transcript="empty")
    assert _snapshot(mini_corpus) == before, "the corpus must never be written"

    labels = _consensus(mini_corpus)
    truth = pd.read_csv(mini_corpus / "true_labels.csv")
    train = json.loads(manifests["train"].read_text())
    valid = json.loads(manifests["valid"].read_text())
    test = json.loads(manifests["test"].read_text())

    for split, manifest in (("Train", train), ("Development", valid)):
        labelled = labels[(labels["Split_Set"] == split) & labels["EmoClass"].isin(EMOTIONS)]
        assert set(manifest) == {name[:-4] for name in labelled["FileName"]}
        assert {entry["emotion"] for entry in manifest.values()} <= set(EMOTIONS)
    assert len(train) < (labels["Split_Set"] == "Train").sum(), "X and O turns must be dropped"

    test3 = truth[truth["Split_Set"] == "Test3"]["FileName"]
    assert set(test) == {name[:-4] for name in test3}
    assert all(entry["emotion"] is None for entry in test.values()), "Test3 labels are hidden"

    for entry in list(train.values())[:10]:
        info = soundfile.info(entry["wav"])
        assert entry["duration"] == pytest.approx(info.frames / info.samplerate, abs=1e-3)
        assert entry["transcript"], "human transcripts exist for Train"
        assert entry["speaker"] and entry["gender"] in ("Male", "Female")
        assert entry["relabeled"] is False


def test_preparation_is_idempotent_and_reruns_on_new_options(mini_corpus, tmp_path):
    save = tmp_path / "prep"
    manifests = prepare_msp_podcast(mini_corpus, save, transcripts=None)
    stamp = manifests["train"].stat().st_mtime_ns
    prepare_msp_podcast(mini_corpus, save, transcripts=None)
    assert manifests["train"].stat().st_mtime_ns == stamp, "same options: skipped"

    prepare_msp_podcast(mini_corpus, save, transcripts="human", missing_transcript="empty")
    assert manifests["train"].stat().st_mtime_ns != stamp, "new options: re-run"
    assert "transcript" in next(iter(json.loads(manifests["train"].read_text()).values()))


def test_any_split_can_be_selected(mini_corpus, tmp_path):
    manifests = prepare_msp_podcast(
        mini_corpus, tmp_path / "prep", splits={"dev": "Development"}, transcripts=None
    )
    assert list(manifests) == ["dev"]
    assert json.loads(manifests["dev"].read_text())


def test_relabeled_turns_join_training(mini_corpus, tmp_path):
    relabeled = relabel_corpus(open_corpus(mini_corpus))[0]
    assert relabeled["AddedToTrain"].any(), "the mini corpus has recoverable X turns"
    relabeled_csv = tmp_path / "relabeled.csv"
    relabeled.to_csv(relabeled_csv, index=False)

    plain = prepare_msp_podcast(mini_corpus, tmp_path / "plain", transcripts=None)
    augmented = prepare_msp_podcast(
        mini_corpus, tmp_path / "aug", transcripts=None, relabeled_csv=relabeled_csv
    )
    before = json.loads(plain["train"].read_text())
    after = json.loads(augmented["train"].read_text())
    added = relabeled[relabeled["AddedToTrain"]]
    assert len(after) == len(before) + len(added)
    for row in added.itertuples():
        entry = after[row.FileName[:-4]]
        assert entry["emotion"] == row.EmoClass_Recomputed and entry["relabeled"] is True
    assert json.loads(plain["valid"].read_text()) == json.loads(augmented["valid"].read_text())


def test_missing_transcript_names_the_file(mini_corpus, tmp_path):
    # Test3 has no human transcripts: the default policy stops and says so.
    with pytest.raises(PreparationError, match=r"Transcripts/MSP-PODCAST_test3_\d+\.txt: transcript missing"):
        prepare_msp_podcast(mini_corpus, tmp_path / "prep", transcripts="human")


def test_whisper_transcripts_file_is_used(mini_corpus, tmp_path):
    truth = pd.read_csv(mini_corpus / "true_labels.csv")
    whisper = pd.DataFrame({"FileName": truth["FileName"], "Transcript": "hello there"})
    csv = tmp_path / "transcripts.csv"
    whisper.to_csv(csv, index=False)
    manifests = prepare_msp_podcast(mini_corpus, tmp_path / "prep", transcripts=csv)
    test = json.loads(manifests["test"].read_text())
    assert {entry["transcript"] for entry in test.values()} == {"hello there"}


def test_turn_missing_from_the_whisper_csv_names_the_csv(mini_corpus, tmp_path):
    # The message names the file that lacks it, not a human transcript that may well exist.
    truth = pd.read_csv(mini_corpus / "true_labels.csv").sort_values("FileName")
    csv = tmp_path / "transcripts.csv"
    pd.DataFrame({"FileName": truth["FileName"][1:], "Transcript": "hello"}).to_csv(csv, index=False)
    missing = truth["FileName"].iloc[0]
    with pytest.raises(PreparationError, match=rf"transcripts\.csv: no transcript row for {missing}"):
        prepare_msp_podcast(mini_corpus, tmp_path / "prep", transcripts=csv,
                            keep_all_labels=("train", "valid", "test"))


def test_not_a_corpus_names_the_missing_path(tmp_path):
    with pytest.raises(CorpusLayoutError, match="not found"):
        prepare_msp_podcast(tmp_path / "nowhere", tmp_path / "prep")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusLayoutError, match="Audios"):
        prepare_msp_podcast(tmp_path / "empty", tmp_path / "prep")


def test_save_folder_inside_corpus_is_refused(mini_corpus):
    with pytest.raises(PreparationError, match="inside the corpus"):
        prepare_msp_podcast(mini_corpus, mini_corpus / "manifests", transcripts=None)


def test_unknown_split_name_is_refused(mini_corpus, tmp_path):
    with pytest.raises(PreparationError, match="unknown Split_Set 'Test4'"):
        prepare_msp_podcast(mini_corpus, tmp_path / "prep", splits={"test": "Test4"})


BAD_AUDIO = {
    "missing": "audio file missing",
    "unreadable": "unreadable audio file",
    "empty": "empty audio file",
    "too-short": "too short: 399 samples at 16000 Hz",
    "nan": "1 samples are NaN or infinite",
}


def _damage(path, kind):
    if kind == "missing":
        path.unlink()
    elif kind == "unreadable":
        path.write_bytes(b"RIFF not really a wav")
    elif kind == "empty":
        soundfile.write(path, [], 16000)
    elif kind == "nan":
        soundfile.write(path, np.r_[np.zeros(800), np.nan], 16000, subtype="FLOAT")
    else:  # one sample under the encoders' receptive field
        soundfile.write(path, np.zeros(399), 16000)


def _consensus(corpus):
    return open_corpus(corpus).consensus()


def _first_train_turn(corpus):
    labels = _consensus(corpus)
    train = labels[(labels["Split_Set"] == "Train") & labels["EmoClass"].isin(EMOTIONS)]
    return train["FileName"].iloc[0]


def _read_skipped(save):
    return pd.read_csv(save / "skipped.csv", dtype=str, keep_default_na=False)


@pytest.mark.parametrize("kind", BAD_AUDIO)
def test_bad_audio_is_left_out_and_listed(corpus_copy, tmp_path, kind, caplog):
    victim = _first_train_turn(corpus_copy)
    _damage(corpus_copy / "Audios" / victim, kind)
    with caplog.at_level(logging.WARNING, logger="data_prep"):
        manifests = prepare_msp_podcast(corpus_copy, tmp_path / "prep", transcripts=None)
    train = json.loads(manifests["train"].read_text())
    assert victim[:-4] not in train and len(train) > 10, "only the bad turn is left out"
    skipped = _read_skipped(tmp_path / "prep")
    assert list(skipped.columns) == ["FileName", "Split", "Reason"]
    assert skipped[["FileName", "Split"]].values.tolist() == [[victim, "Train"]]
    assert skipped["Reason"].iloc[0].startswith(BAD_AUDIO[kind])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(victim in message and BAD_AUDIO[kind] in message for message in warnings)
    assert any("1 turn(s) left out for bad audio" in message for message in warnings), "summary"


@pytest.mark.parametrize("kind", BAD_AUDIO)
def test_strict_stops_at_bad_audio_naming_the_file(corpus_copy, tmp_path, kind):
    victim = _first_train_turn(corpus_copy)
    _damage(corpus_copy / "Audios" / victim, kind)
    with pytest.raises(PreparationError, match=f"{victim}: {re.escape(BAD_AUDIO[kind])}.*of Train"):
        prepare_msp_podcast(corpus_copy, tmp_path / "prep", transcripts=None, strict=True)
    assert not (tmp_path / "prep" / "prepare_options.json").exists(), "a stopped run is not done"


def test_fixed_audio_is_taken_in_by_the_next_run(corpus_copy, tmp_path):
    save = tmp_path / "prep"
    victim = _first_train_turn(corpus_copy)
    wav = corpus_copy / "Audios" / victim
    good = wav.read_bytes()
    wav.write_bytes(b"RIFF broken")
    manifests = prepare_msp_podcast(corpus_copy, save, transcripts=None)
    assert victim[:-4] not in json.loads(manifests["train"].read_text())

    stamp = manifests["train"].stat().st_mtime_ns
    prepare_msp_podcast(corpus_copy, save, transcripts=None)
    assert manifests["train"].stat().st_mtime_ns == stamp, "nothing changed: skipped"
    with pytest.raises(PreparationError, match=f"{victim}: unreadable"):
        prepare_msp_podcast(corpus_copy, save, transcripts=None, strict=True)  # strict is an option

    wav.write_bytes(good)
    prepare_msp_podcast(corpus_copy, save, transcripts=None)
    assert victim[:-4] in json.loads(manifests["train"].read_text()), "the fixed file is taken in"
    assert _read_skipped(save).empty


def test_every_turn_bad_is_an_error(corpus_copy, tmp_path):
    for wav in (corpus_copy / "Audios").glob("*.wav"):
        if "test3" not in wav.name:
            wav.write_bytes(b"")
    with pytest.raises(PreparationError, match="every one of the .* turns of Train has bad audio"):
        prepare_msp_podcast(corpus_copy, tmp_path / "prep", transcripts=None)
    assert len(_read_skipped(tmp_path / "prep")) > 10, "the list is written for the user to see"


def test_cli_strict_and_split_errors(corpus_copy, tmp_path, capsys):
    victim = _first_train_turn(corpus_copy)
    (corpus_copy / "Audios" / victim).unlink()
    base = [f"--data_folder={corpus_copy}", f"--save_folder={tmp_path / 'prep'}", "--transcripts=none"]
    main(base)
    assert "skipped:     1 turns with bad audio" in capsys.readouterr().out
    # Through the command's edge (ser.cli), as `python -m data_prep.msp_prepare` runs it.
    assert run_command("data_prep.msp_prepare", main, [*base, "--strict"]) == EXIT_BAD_INPUT
    expected = f"data_prep.msp_prepare: error: {corpus_copy / 'Audios' / victim}: audio file missing"
    assert expected in capsys.readouterr().err
    with pytest.raises(SystemExit) as stopped:
        main([*base, "--split", "Development"])
    assert stopped.value.code == EXIT_BAD_INPUT
    assert "--split takes NAME=Split_Set" in capsys.readouterr().err


def test_stale_manifest_names_the_missing_file_at_training_time(corpus_copy, tmp_path):
    from ser.training.datasets import make_dataset

    manifests = prepare_msp_podcast(corpus_copy, tmp_path / "prep", transcripts=None)
    victim = _first_train_turn(corpus_copy)
    (corpus_copy / "Audios" / victim).unlink()  # after the preparation: the manifest is stale
    dataset = make_dataset(manifests["train"], train=True, max_duration=12.0)
    index = dataset.data_ids.index(victim[:-4])
    with pytest.raises(ValueError, match=f"{victim}: .*listed in {re.escape(str(manifests['train']))}"):
        dataset[index]


def test_interrupted_preparation_is_redone(mini_corpus, tmp_path):
    save = tmp_path / "prep"
    manifests = prepare_msp_podcast(mini_corpus, save, transcripts=None)
    # A run killed before the options file was written leaves no proof of completion.
    (save / "prepare_options.json").unlink()
    manifests["valid"].write_text("{ truncated")
    prepare_msp_podcast(mini_corpus, save, transcripts=None)
    assert json.loads(manifests["valid"].read_text())


@pytest.mark.parametrize("strict", [False, True])
def test_train_py_data_stage_honours_strict_prep(corpus_copy, tmp_path, strict):
    from data_prep.system_prep import prepare_system_data

    victim = _first_train_turn(corpus_copy)
    (corpus_copy / "Audios" / victim).write_bytes(b"")
    hparams = {
        "data_folder": str(corpus_copy),
        "manifest_folder": str(tmp_path / "manifests"),
        "splits": {"train": "Train", "valid": "Development", "test": "Test3"},
        "skip_prep": False,
        "transcripts": None,
        "strict_prep": strict,
    }
    if strict:
        with pytest.raises(PreparationError, match=f"{victim}: unreadable audio file"):
            prepare_system_data(hparams)
    else:
        prepare_system_data(hparams)
        assert _read_skipped(tmp_path / "manifests")["FileName"].tolist() == [victim]


def test_minimum_length_is_the_encoders_receptive_field():
    from data_prep.audio_check import MIN_SAMPLES
    from ser.inference.recognizer import MIN_SAMPLES as INFERENCE_MIN_SAMPLES

    assert MIN_SAMPLES == INFERENCE_MIN_SAMPLES == 400
