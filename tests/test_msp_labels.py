"""Readers of the MSP-Podcast label files: formats and error messages."""

import json

import numpy as np
import pytest

from data_prep.corpora import LabelFileError
from data_prep.corpora.msp_label_files import read_consensus_file, read_detailed_file
from data_prep.corpora.msp_podcast import MSPPodcast

HEADER = "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set"
CONSENSUS_ROWS = [
    "MSP-PODCAST_0001_0001.wav,N,4.0,4.2,3.8,0012,Female,Train",
    "MSP-PODCAST_0001_0002.wav,X,2.5,3.0,4.0,0012,Female,Development",
    "MSP-PODCAST_0002_0001.wav,O,5.0,,6.0,Unknown,Male,Test1",
]


def read_consensus_labels(root):
    """The consensus table as the v1.11 reader finds it under ``root``."""
    return MSPPodcast(root).consensus()


def read_detailed_labels(root, strict=True):
    """The annotations table of ``root/Labels/labels_detailed.csv`` (odd rows are errors)."""
    return read_detailed_file(root / "Labels" / "labels_detailed.csv", strict=strict).table


def write_labels(root, name, text):
    labels = root / "Labels"
    labels.mkdir(exist_ok=True)
    path = labels / name
    path.write_text(text)
    return path


def write_consensus_csv(root, rows=CONSENSUS_ROWS, header=HEADER):
    return write_labels(root, "labels_consensus.csv", "\n".join([header, *rows]) + "\n")


def test_consensus_csv_columns_types_and_values(tmp_path):
    write_consensus_csv(tmp_path)
    labels = read_consensus_labels(tmp_path)
    assert list(labels.columns) == HEADER.split(",")
    assert labels["FileName"].tolist()[0] == "MSP-PODCAST_0001_0001.wav"
    assert labels["EmoClass"].tolist() == ["N", "X", "O"]
    # Speaker ids stay strings: leading zeros kept, "Unknown" allowed.
    assert labels["SpkrID"].tolist() == ["0012", "0012", "Unknown"]
    assert labels["EmoAct"].dtype == np.float64
    assert labels["EmoVal"].tolist()[:2] == [4.2, 3.0]
    assert np.isnan(labels["EmoVal"].iloc[2])  # an empty attribute reads as NaN
    assert labels["Split_Set"].tolist() == ["Train", "Development", "Test1"]


def test_consensus_json_used_when_no_csv(tmp_path):
    table = {
        "a.wav": {"EmoClass": "H", "EmoAct": "5.5", "EmoVal": "6", "EmoDom": "4",
                  "SpkrID": "7", "Gender": "Male", "Split_Set": "Test2"},
        # Some releases wrap the fields in a one-element list.
        "b.wav": [{"EmoClass": "S", "EmoAct": 2, "EmoVal": 2, "EmoDom": 3,
                   "SpkrID": "Unknown", "Gender": "Female", "Split_Set": "Train"}],
    }
    write_labels(tmp_path, "labels_consensus.json", json.dumps(table))
    labels = read_consensus_labels(tmp_path)
    assert labels["FileName"].tolist() == ["a.wav", "b.wav"]
    assert labels["EmoClass"].tolist() == ["H", "S"]
    assert labels["EmoAct"].tolist() == [5.5, 2.0]
    assert labels["Split_Set"].tolist() == ["Test2", "Train"]


def test_consensus_csv_preferred_over_json_and_path_keyword(tmp_path):
    write_consensus_csv(tmp_path)
    write_labels(tmp_path, "labels_consensus.json", "{}")  # would fail if it were read
    assert len(read_consensus_labels(tmp_path)) == 3
    elsewhere = tmp_path / "other.csv"
    elsewhere.write_text(HEADER + "\n" + CONSENSUS_ROWS[0] + "\n")
    assert read_consensus_file(elsewhere)["EmoClass"].tolist() == ["N"]


@pytest.mark.parametrize(
    ("rows", "header", "expected"),
    [
        (CONSENSUS_ROWS, HEADER.replace(",Split_Set", ""), ":1: missing column(s) Split_Set"),
        ([CONSENSUS_ROWS[0], CONSENSUS_ROWS[1].replace("Development", "Dev")], HEADER,
         ":3: Split_Set not one of Train Development Test1 Test2 Test3: 'Dev'"),
        ([CONSENSUS_ROWS[0], CONSENSUS_ROWS[1], CONSENSUS_ROWS[2].replace(",O,", ",Q,")], HEADER,
         ":4: EmoClass not one of A C D F H N S U X O: 'Q'"),
        ([CONSENSUS_ROWS[0], CONSENSUS_ROWS[0]], HEADER,
         ":3: duplicate FileName 'MSP-PODCAST_0001_0001.wav'"),
        ([CONSENSUS_ROWS[0].replace("4.2", "high")], HEADER, ":2: EmoVal is not a number: 'high'"),
        ([], HEADER, ":2: empty file"),
    ],
    ids=["missing-column", "unknown-split", "unknown-class", "duplicate", "attribute", "no-rows"],
)
def test_consensus_csv_errors_name_file_and_line(tmp_path, rows, header, expected):
    path = write_consensus_csv(tmp_path, rows=rows, header=header)
    with pytest.raises(LabelFileError) as caught:
        read_consensus_labels(tmp_path)
    assert str(caught.value).startswith(str(path) + expected)


def test_consensus_errors_for_empty_and_missing_files(tmp_path):
    path = write_labels(tmp_path, "labels_consensus.csv", "")
    with pytest.raises(LabelFileError, match=r"labels_consensus\.csv:1: empty file"):
        read_consensus_labels(tmp_path)
    missing = tmp_path / "nowhere"
    with pytest.raises(LabelFileError) as caught:
        read_consensus_labels(missing)
    assert str(caught.value) == f"{missing / 'Labels' / 'labels_consensus.csv'}: file not found"
    assert path.exists()


def test_consensus_json_error_names_the_key(tmp_path):
    table = {"good.wav": {"EmoClass": "N", "EmoAct": 1, "EmoVal": 1, "EmoDom": 1, "SpkrID": "1",
                          "Gender": "Male", "Split_Set": "Train"},
             "bad.wav": {"EmoClass": "Z", "EmoAct": 1, "EmoVal": 1, "EmoDom": 1, "SpkrID": "1",
                         "Gender": "Male", "Split_Set": "Train"}}
    path = write_labels(tmp_path, "labels_consensus.json", json.dumps(table))
    with pytest.raises(LabelFileError) as caught:
        read_consensus_labels(tmp_path)
    assert str(caught.value).startswith(f"{path}:bad.wav: EmoClass not one of")
    duplicated = '{"a.wav": {"EmoClass": "N"}, "a.wav": {"EmoClass": "H"}}'
    path.write_text(duplicated)
    with pytest.raises(LabelFileError, match=r"json:a\.wav: duplicate FileName"):
        read_consensus_labels(tmp_path)


V111_ROWS = [
    '"MSP-PODCAST_0001_0001.wav","WORKER00014325; Neutral; Concerned,Frustrated; A:3.0; V:4.0;'
    ' D:4.0;"',
    '"MSP-PODCAST_0001_0001.wav","WORKER00000007; Other-Bored; ; A:2.0; V:3.0; D:4.0;"',
    '"MSP-PODCAST_0001_0002.wav","WORKER00014325; Angry; Annoyed; A:6.0; V:2.0; D:6.0;"',
    '"MSP-PODCAST_0001_0002.wav","WORKER00000009; Surprise; ; A:5.0; V:5.0; D:5.0"',
]


def test_detailed_v111_format(tmp_path):
    write_labels(tmp_path, "labels_detailed.csv", "FileName,EmoDetail\n" + "\n".join(V111_ROWS))
    detailed = read_detailed_labels(tmp_path)
    assert list(detailed.columns) == [
        "FileName", "Worker", "Emotion", "Secondary", "EmoAct", "EmoVal", "EmoDom"]
    assert detailed["EmoAct"].tolist() == [3.0, 2.0, 6.0, 5.0]
    assert detailed["Worker"].tolist() == [
        "WORKER00014325", "WORKER00000007", "WORKER00014325", "WORKER00000009"]
    assert detailed["Emotion"].tolist() == ["N", "O", "A", "U"]
    assert detailed["Secondary"].tolist() == ["Concerned,Frustrated", "", "Annoyed", ""]
    assert detailed["FileName"].nunique() == 2


def test_detailed_v111_free_text_with_semicolon_still_parses(tmp_path):
    # A semicolon inside Other's free text defeats the fast splitter; the
    # exact parser must take over and keep the row.
    rows = V111_ROWS[:1] + ['"b.wav","WORKER00000001; Other-bored; or tired; Sad; A:2; V:3; D:4;"']
    write_labels(tmp_path, "labels_detailed.csv", "FileName,EmoDetail\n" + "\n".join(rows))
    detailed = read_detailed_labels(tmp_path)
    assert detailed["Emotion"].tolist() == ["N", "O"]
    assert detailed["Worker"].tolist() == ["WORKER00014325", "WORKER00000001"]
    assert detailed["Secondary"].tolist() == ["Concerned,Frustrated", "or tired; Sad"]


def test_detailed_v16_format_words_and_letters(tmp_path):
    text = ("FileName,Workers,EmoClass_Major,EmoClass_Second,EmoAct,EmoVal,EmoDom\n"
            "a.wav,WORKER1,Neutral,\"Concerned,Amused\",3,4,4\n"
            "a.wav,WORKER2,S,,2,2,3\n"
            "b.wav,WORKER1,Other-Tired,,4,4,4\n")
    write_labels(tmp_path, "labels_detailed.csv", text)
    detailed = read_detailed_labels(tmp_path)
    assert detailed["Worker"].tolist() == ["WORKER1", "WORKER2", "WORKER1"]
    assert detailed["Emotion"].tolist() == ["N", "S", "O"]
    assert detailed["Secondary"].tolist() == ["Concerned,Amused", "", ""]


def test_detailed_v16_without_secondary_and_singular_worker_column(tmp_path):
    write_labels(tmp_path, "labels_detailed.csv",
                 "FileName,Worker,EmoClass_Major\na.wav,W1,Happy\na.wav,W2,Contempt\n")
    detailed = read_detailed_labels(tmp_path)
    assert detailed["Emotion"].tolist() == ["H", "C"]
    assert detailed["Secondary"].tolist() == ["", ""]


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([V111_ROWS[0], '"b.wav","WORKER1 Neutral A:3.0"'],
         ":3: cannot parse EmoDetail (expected 'WORKER; Primary; Secondary; A:x; V:y; D:z;'): "
         "'WORKER1 Neutral A:3.0'"),
        ([V111_ROWS[0], V111_ROWS[1], '"b.wav","; Neutral; ; A:1; V:1; D:1;"'],
         ":4: cannot parse EmoDetail"),
        ([V111_ROWS[0], '"b.wav","WORKER1; Joyful; ; A:1; V:1; D:1;"'],
         ":3: unknown primary emotion 'Joyful'"),
    ],
    ids=["no-fields", "no-worker", "unknown-emotion"],
)
def test_detailed_errors_name_file_line_and_raw_string(tmp_path, rows, expected):
    path = write_labels(tmp_path, "labels_detailed.csv", "FileName,EmoDetail\n" + "\n".join(rows))
    with pytest.raises(LabelFileError) as caught:
        read_detailed_labels(tmp_path)
    assert str(caught.value).startswith(str(path) + expected)


def test_detailed_errors_for_missing_column_and_file(tmp_path):
    path = write_labels(tmp_path, "labels_detailed.csv", "FileName,Annotation\na.wav,x\n")
    with pytest.raises(LabelFileError, match=r"labels_detailed\.csv:1: missing column"):
        read_detailed_labels(tmp_path)
    path.unlink()
    with pytest.raises(LabelFileError, match=r"labels_detailed\.csv: file not found"):
        read_detailed_labels(tmp_path)


def test_mini_corpus_labels_read_cleanly(request):
    mini_corpus = request.getfixturevalue("mini_corpus")
    consensus = read_consensus_labels(mini_corpus)
    assert len(consensus) > 0
    if (mini_corpus / "Labels" / "labels_detailed.csv").exists():
        detailed = read_detailed_labels(mini_corpus)
        # Every annotated turn is a labelled turn of the same corpus.
        assert set(detailed["FileName"]) <= set(consensus["FileName"])


def test_consensus_line_numbers_count_blank_lines_and_quoted_newlines(tmp_path):
    rows = [CONSENSUS_ROWS[0], "", '"MSP-PODCAST_0001_0002.wav",X,2.5,3.0,4.0,"00\n12",Female,Train', "",
            CONSENSUS_ROWS[2].replace(",O,", ",Q,")]
    path = write_consensus_csv(tmp_path, rows=rows)
    with pytest.raises(LabelFileError) as caught:
        read_consensus_labels(tmp_path)
    assert str(caught.value).startswith(f"{path}:7: EmoClass not one of")


@pytest.mark.parametrize("encoding", ["utf-16", "latin-1"])
def test_consensus_in_other_encodings(tmp_path, encoding):
    path = write_consensus_csv(tmp_path, rows=[CONSENSUS_ROWS[0].replace("Female", "Féminin")])
    path.write_bytes(path.read_text().encode(encoding))
    assert read_consensus_labels(tmp_path)["Gender"].tolist() == ["Féminin"]
