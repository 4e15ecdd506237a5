"""Every MSP-Podcast release through the one reader interface (data_prep.corpora).

The same mini corpus (same seed: same turns, audio and votes) is written in the format
of each release; preparing and relabeling it must give the same manifests and the same
relabeling whatever the release, once file names are mapped back. Odd annotation rows,
other text encodings and true line numbers are checked through the real commands.
"""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from data_prep.consensus import relabel_corpus
from data_prep.corpora import CorpusLayoutError, LabelFileError, open_corpus
from data_prep.corpora.msp_label_files import read_detailed_file
from data_prep.corpora.msp_podcast import MSPPodcast
from data_prep.mini_corpus import RELEASES, generate_mini_corpus
from data_prep.mini_corpus.plan import plan_corpus
from data_prep.mini_corpus.releases import UNRELEASED_AUDIO_TURN, release_file_names
from data_prep.msp_prepare import prepare_msp_podcast
from tests.cli_helpers import assert_one_line_error, cli, python_module
from tests.conftest import train_command

SEED, TURNS = 5, 48
#: What the reader says each release is (the v1.6 folder is named after its release).
DETECTED = {"v1.11": "v1.11", "v1.12": "v1.12", "2.0": "2.0", "v1.6": "v1.6"}


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    """release → root of the same mini corpus written in that release's format."""
    base = tmp_path_factory.mktemp("releases")
    return {release: generate_mini_corpus(base / release, seed=SEED, n_turns=TURNS, release=release)
            for release in RELEASES}


@pytest.fixture(scope="module")
def to_planned():
    """release → {name in that release: planned (v1.11) name}."""
    _, turns, _ = plan_corpus(SEED, TURNS)
    return {release: {new: old for old, new in release_file_names(turns, release).items()}
            for release in RELEASES}


def _labels_only(corpus, folder):
    """A copy of a corpus's label files (relabeling reads nothing else)."""
    root = folder / corpus.name
    shutil.copytree(corpus / "Labels", root / "Labels")
    return root


@pytest.mark.parametrize("release", RELEASES)
def test_the_release_is_told_from_the_folder(releases, release):
    corpus = open_corpus(releases[release])
    assert corpus.release == DETECTED[release]
    assert corpus.describe().startswith(f"MSP-Podcast {DETECTED[release]} in {releases[release]}")


def test_older_folder_names_are_read_and_the_release_is_named(releases, tmp_path):
    root = tmp_path / "corpus"
    shutil.copytree(releases["v1.6"], root)
    (root / "Labels").rename(root / "label")
    (root / "Audios").rename(root / "Audio")
    corpus = open_corpus(root)
    assert corpus.release == "v1.6-v1.10"  # the folder name no longer says which
    assert corpus.consensus_file == root / "label" / "labels_concensus.csv"
    turns = corpus.turns(["Development"])
    assert len(turns) > 0 and all(Path(wav).parent == root / "Audio" for wav in turns["wav"])


def _prepared(root, save, names):
    manifests = prepare_msp_podcast(root, save, transcripts="human", missing_transcript="empty")
    prepared = {}
    for split, path in manifests.items():
        entries = {}
        for entry in json.loads(path.read_text()).values():
            planned = names[Path(entry["wav"]).name]
            entries[planned] = {**entry, "wav": planned}
        prepared[split] = entries
    return prepared


def _relabeled(root, names):
    relabeled, skipped = relabel_corpus(open_corpus(root))
    assert skipped == []
    relabeled["FileName"] = relabeled["FileName"].map(names)
    relabeled = relabeled[relabeled["FileName"].notna()]  # the 2.0 row without audio
    return relabeled.sort_values("FileName").reset_index(drop=True)


def test_every_release_gives_the_same_manifests_and_relabeling(releases, to_planned, tmp_path):
    reference = _prepared(releases["v1.11"], tmp_path / "v1.11", to_planned["v1.11"])
    reference_relabeled = _relabeled(releases["v1.11"], to_planned["v1.11"])
    assert reference_relabeled["AddedToTrain"].any(), "the corpus has X turns to recover"
    assert {len(entries) for entries in reference.values()} != {0}
    for release in RELEASES[1:]:
        prepared = _prepared(releases[release], tmp_path / release, to_planned[release])
        assert prepared == reference, release
        pd.testing.assert_frame_equal(_relabeled(releases[release], to_planned[release]), reference_relabeled,
                                      obj=release)
    # 2.0's consensus row whose audio is not released is a listed skipped turn.
    skipped = pd.read_csv(tmp_path / "2.0" / "skipped.csv")
    assert skipped[["FileName", "Split"]].values.tolist() == [[UNRELEASED_AUDIO_TURN, "Development"]]
    assert skipped["Reason"].iloc[0].startswith("audio file missing")


def test_v1_12_names_reach_the_manifests(releases, tmp_path):
    manifests = prepare_msp_podcast(releases["v1.12"], tmp_path / "prep", transcripts=None)
    test = json.loads(manifests["test"].read_text())
    assert sorted(test)[:2] == ["MSP-PODCAST_test3_0001", "MSP-PODCAST_test3_0002"]
    train = json.loads(manifests["train"].read_text())
    assert any(key.count("_") == 3 for key in train), "three-part names are turns like any other"


def test_attributes_are_in_both_tables_and_agree(releases):
    corpus = open_corpus(releases["2.0"])
    annotations = corpus.annotations().table
    assert {"EmoAct", "EmoVal", "EmoDom"} <= set(annotations.columns)
    assert annotations["EmoAct"].between(1, 7).all()
    means = annotations.groupby("FileName")[["EmoAct", "EmoVal", "EmoDom"]].mean()
    turns = corpus.turns(["Train", "Development"]).set_index("FileName")
    turns = turns.drop(index=UNRELEASED_AUDIO_TURN)
    pd.testing.assert_frame_equal(turns.loc[means.index, list(means.columns)].round(3), means.round(3))
    # The same votes and ratings as v1.11's EmoDetail strings (2.0 writes integers).
    columns = ["FileName", "Worker", "Emotion", "EmoAct", "EmoVal", "EmoDom"]
    v111 = open_corpus(releases["v1.11"]).annotations().table[columns]
    pd.testing.assert_frame_equal(v111.sort_values(columns).reset_index(drop=True),
                                  annotations[columns].sort_values(columns).reset_index(drop=True))


def test_2_0_vote_counts_are_the_annotations_counted(releases):
    corpus = open_corpus(releases["2.0"])
    released = corpus.vote_counts()  # labels_detailed_aggregated.csv
    counted = MSPPodcast.vote_counts(corpus)
    pd.testing.assert_frame_equal(released.loc[counted.index], counted, check_names=False, check_dtype=False)


ODD_2_0_ROWS = (
    'MSP-PODCAST_0001_0001.wav,WORKER1,Joyful,,4,4,4\n'  # a word that names no emotion
    'MSP-PODCAST_0001_0001.wav,WORKER2,Neutral,,,4,4\n'  # a missing rating
    '\n'  # a blank line (counted by the line numbers)
    'MSP-PODCAST_0001_0001.wav,WORKER3,Sadness,"Concerned,\nAmused",4,3,nan\n'  # NaN rating, 2 lines
    'MSP-PODCAST_0001_0001.wav,WORKER4,Happiness,,4,4\n'  # one field short: the rating is empty
)


def _append(path, text):
    with open(path, "a", encoding="utf-8") as stream:
        stream.write(text)


def test_odd_annotation_rows_are_left_out_listed_or_stop_with_strict(releases, tmp_path):
    root = _labels_only(releases["2.0"], tmp_path)
    clean = cli(python_module("data_prep.consensus", "--data_folder", root, "--out", tmp_path / "clean.csv"))
    assert clean.returncode == 0, clean.stderr
    detailed = root / "Labels" / "labels_detailed.csv"
    n_lines = len(detailed.read_text().splitlines())
    _append(detailed, ODD_2_0_ROWS)

    out = tmp_path / "odd" / "relabeled.csv"
    done = cli(python_module("data_prep.consensus", "--data_folder", root, "--out", out))
    assert done.returncode == 0, done.stderr
    assert "4 annotation row(s) left out" in done.stdout
    listed = pd.read_csv(out.parent / "skipped_annotations.csv")
    assert listed["Line"].tolist() == [n_lines + 1, n_lines + 2, n_lines + 4, n_lines + 6]
    assert listed["Reason"].tolist() == [
        "unknown primary emotion 'Joyful'",
        "EmoAct rating is not a number: ''",
        "EmoDom rating is not a number: 'nan'",
        "EmoDom rating is not a number: ''",
    ]
    assert set(listed["File"]) == {str(detailed.resolve())}
    assert out.read_text() == (tmp_path / "clean.csv").read_text(), "the odd rows changed nothing else"

    strict = cli(python_module("data_prep.consensus", "--data_folder", root, "--out", tmp_path / "s.csv",
                               "--strict"))
    assert_one_line_error(strict, "error:",
                          f"{detailed.resolve()}:{n_lines + 1}: unknown primary emotion 'Joyful'")
    assert not (tmp_path / "s.csv").exists()


def test_an_emo_detail_row_that_does_not_parse_is_listed_with_its_line(releases, tmp_path):
    root = _labels_only(releases["v1.11"], tmp_path)
    detailed = root / "Labels" / "labels_detailed.csv"
    n_lines = len(detailed.read_text().splitlines())
    _append(detailed, '\n\nMSP-PODCAST_0001_0001.wav,"WORKER1 Neutral A:3.0"\n')
    annotations = open_corpus(root).annotations()
    assert [(row.line, row.reason.split(" (")[0]) for row in annotations.skipped] == [
        (n_lines + 3, "cannot parse EmoDetail")]
    with pytest.raises(LabelFileError, match=rf"labels_detailed\.csv:{n_lines + 3}: cannot parse EmoDetail"):
        open_corpus(root).annotations(strict=True)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "latin-1", "utf-8-sig"])
def test_label_files_in_other_encodings_read_the_same(releases, tmp_path, encoding):
    reference, _ = relabel_corpus(open_corpus(releases["2.0"]))
    root = _labels_only(releases["2.0"], tmp_path)
    for path in (root / "Labels").glob("*.csv"):
        text = path.read_text(encoding="utf-8")
        if path.name == "labels_detailed.csv":  # a non-ASCII secondary emotion, as spreadsheets write
            text = text.replace("Concerned", "Concernée")
        path.write_bytes(text.encode(encoding))
    corpus = open_corpus(root)
    assert corpus.release == "2.0", "the header is read in its encoding"
    relabeled, skipped = relabel_corpus(corpus)
    assert skipped == []
    pd.testing.assert_frame_equal(relabeled, reference)
    assert corpus.annotations().table["Secondary"].str.contains("Concernée").any()


def test_transcripts_in_other_encodings_and_binary_files(releases, tmp_path):
    root = tmp_path / "corpus"
    shutil.copytree(releases["v1.11"], root)
    corpus = open_corpus(root)
    train = corpus.turns(["Train"])
    first, second, third = sorted(train.loc[train["EmoClass"].isin(list("ACDFHNSU")), "FileName"])[:3]
    corpus.transcript_path(first).write_bytes("un café, s'il vous plaît".encode("latin-1"))
    corpus.transcript_path(second).write_bytes("naïve façade".encode("utf-16"))
    corpus.transcript_path(third).write_bytes(b"\x00\x01\x02\x03binary\x00")
    assert corpus.transcript(first) == "un café, s'il vous plaît"
    assert corpus.transcript(second) == "naïve façade"
    binary = rf"{corpus.transcript_path(third)}: binary data, not a text file"
    with pytest.raises(LabelFileError, match=binary):
        corpus.transcript(third)
    done = cli(python_module("data_prep.msp_prepare", "--data_folder", root,
                             "--save_folder", tmp_path / "prep", "--missing_transcript", "empty"))
    assert_one_line_error(done, "error:", f"{corpus.transcript_path(third)}: binary data")


def test_archives_not_unpacked_and_unknown_folders_are_named(tmp_path):
    (tmp_path / "v112").mkdir()
    for archive in ("Labels.zip", "Audios.tar.gz", "Transcripts.zip"):
        (tmp_path / "v112" / archive).write_bytes(b"PK")
    with pytest.raises(CorpusLayoutError, match="Labels.zip, Audios.tar.gz, Transcripts.zip .*unpack them"):
        open_corpus(tmp_path / "v112")
    (tmp_path / "other" / "Audios").mkdir(parents=True)
    with pytest.raises(CorpusLayoutError, match=r"Labels/labels_consensus\.csv: file not found .*concensus"):
        open_corpus(tmp_path / "other")


def test_preparation_asks_for_the_audio_when_only_labels_are_there(releases, tmp_path):
    root = _labels_only(releases["v1.11"], tmp_path)
    with pytest.raises(CorpusLayoutError, match=r"Audios: folder not found — .* holds the labels but not"):
        prepare_msp_podcast(root, tmp_path / "prep", transcripts=None)


def test_detailed_line_numbers_count_blank_lines_and_quoted_newlines(tmp_path):
    path = tmp_path / "labels_detailed.csv"
    path.write_text(
        "FileName,WorkerID,EmoClass_Major,EmoClass_Second,EmoAct,EmoVal,EmoDom\n"
        "\n"
        'a.wav,W1,Neutral,"Concerned,\nAmused,\nTired",4,4,4\n'
        "\n\n"
        "a.wav,W2,Glad,,4,4,4\n"
    )
    with pytest.raises(LabelFileError, match=r"labels_detailed\.csv:8: unknown primary emotion 'Glad'"):
        read_detailed_file(path, strict=True)
    annotations = read_detailed_file(path)
    assert annotations.table["Secondary"].tolist() == ["Concerned,\nAmused,\nTired"]
    assert [row.line for row in annotations.skipped] == [8]


@pytest.mark.parametrize("encoding", ["utf-16", "latin-1"])
def test_a_transcripts_table_in_another_encoding_is_read_and_a_repeat_named(releases, tmp_path, encoding):
    corpus = open_corpus(releases["v1.11"])
    names = sorted(corpus.turns()["FileName"])
    table = tmp_path / "transcripts.csv"
    rows = [f"{name},un café crème" for name in names]
    table.write_bytes(("FileName,Transcript\n" + "\n".join(rows) + "\n").encode(encoding))
    manifests = prepare_msp_podcast(releases["v1.11"], tmp_path / "prep", transcripts=table)
    assert {entry["transcript"] for entry in json.loads(manifests["test"].read_text()).values()} == {
        "un café crème"}
    table.write_bytes(("FileName,Transcript\n" + "\n".join(rows + rows[:1]) + "\n").encode(encoding))
    repeated = rf"transcripts\.csv:{len(rows) + 2}: FileName {names[0]} appears twice"
    with pytest.raises(LabelFileError, match=repeated):
        prepare_msp_podcast(releases["v1.11"], tmp_path / "prep2", transcripts=table)


def _corpus_copy(mini_corpus, folder):
    root = folder / "corpus"
    shutil.copytree(mini_corpus, root)
    return root


def test_a_bad_class_letter_reached_through_train_py_is_one_line(mini_corpus, tiny_models, tmp_path):
    root = _corpus_copy(mini_corpus, tmp_path)
    consensus = root / "Labels" / "labels_consensus.csv"
    lines = consensus.read_text().splitlines(keepends=True)
    fields = lines[4].split(",")
    fields[1] = "Q"
    lines[4] = ",".join(fields)
    consensus.write_text("".join(lines))
    done = cli(train_command("a", root, tmp_path / "results", tiny_models, "--debug"))
    assert_one_line_error(done, "train.py: error:",
                          f"{consensus}:5: EmoClass not one of A C D F H N S U X O: 'Q'")


def test_a_bad_emo_detail_row_with_strict_prep_through_train_py_is_one_line(mini_corpus, tiny_models,
                                                                           tmp_path):
    root = _corpus_copy(mini_corpus, tmp_path)
    detailed = root / "Labels" / "labels_detailed.csv"
    n_lines = len(detailed.read_text().splitlines())
    _append(detailed, 'MSP-PODCAST_0001_0001.wav,"WORKER1; Joyful; ; A:3.0; V:4.0; D:4.0;"\n')
    # Human transcripts: relabeling (system E) comes before any transcription.
    done = cli(train_command("e", root, tmp_path / "results", tiny_models, "--debug",
                             "--transcripts=human", "--strict_prep=True"))
    assert_one_line_error(done, "train.py: error:",
                          f"{detailed}:{n_lines + 1}: unknown primary emotion 'Joyful'")
