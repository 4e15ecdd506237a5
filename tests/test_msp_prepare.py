"""Manifests from the mini corpus: content, idempotence, and clear errors."""

import json
import os
import shutil

import pandas as pd
import pytest
import soundfile

from data_prep.consensus import relabel, write_csv_atomically
from data_prep.msp_labels import read_consensus_labels, read_detailed_labels
from data_prep.msp_layout import CorpusLayoutError
from data_prep.msp_prepare import PreparationError, prepare_msp_podcast
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

    labels = read_consensus_labels(mini_corpus)
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
    relabeled = relabel(read_detailed_labels(mini_corpus), read_consensus_labels(mini_corpus))
    assert relabeled["AddedToTrain"].any(), "the mini corpus has recoverable X turns"
    relabeled_csv = tmp_path / "relabeled.csv"
    write_csv_atomically(relabeled, relabeled_csv)

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


def test_missing_and_empty_audio_name_the_file(corpus_copy, tmp_path):
    labels = read_consensus_labels(corpus_copy)
    victim = labels[labels["Split_Set"] == "Train"]["FileName"].iloc[0]
    (corpus_copy / "Audios" / victim).unlink()
    with pytest.raises(PreparationError, match=f"{victim}: audio file missing"):
        prepare_msp_podcast(corpus_copy, tmp_path / "a", transcripts=None, keep_all_labels=("train",))

    soundfile.write(corpus_copy / "Audios" / victim, [], 16000)
    with pytest.raises(PreparationError, match=f"{victim}: empty audio file"):
        prepare_msp_podcast(corpus_copy, tmp_path / "b", transcripts=None, keep_all_labels=("train",))

    (corpus_copy / "Audios" / victim).write_bytes(b"RIFF not really a wav")
    with pytest.raises(PreparationError, match=f"{victim}: unreadable audio file"):
        prepare_msp_podcast(corpus_copy, tmp_path / "c", transcripts=None, keep_all_labels=("train",))


def test_interrupted_preparation_is_redone(mini_corpus, tmp_path):
    save = tmp_path / "prep"
    manifests = prepare_msp_podcast(mini_corpus, save, transcripts=None)
    # A run killed before the options file was written leaves no proof of completion.
    (save / "prepare_options.json").unlink()
    manifests["valid"].write_text("{ truncated")
    prepare_msp_podcast(mini_corpus, save, transcripts=None)
    assert json.loads(manifests["valid"].read_text())
