"""Label parsers and consensus recomputation under random annotation tables (hypothesis).

Random tables are written in the real file formats (v1.11 ``labels_detailed.csv``
with ``EmoDetail`` strings, ``labels_consensus.csv``) and read back by
``data_prep.corpora``; the recomputed consensus of ``data_prep.consensus`` is
checked on what they return. Properties:

* a reader returns a valid table or raises its documented ``LabelFileError``,
  whose message names the file and the first bad line — nothing else escapes;
* well-formed tables read back exactly what was written;
* every recomputed label is one of the 8 classes, ``O`` (documented: Other won)
  or ``X``, and permuting the annotation rows changes no label.

Examples are derandomized (same inputs on every run) and few, to keep this file fast.
"""

import csv
import io
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from data_prep.consensus import recompute_consensus, relabel
from data_prep.corpora import SPLITS, LabelFileError
from data_prep.corpora.msp_label_files import CONSENSUS_CLASSES, CONSENSUS_COLUMNS, read_detailed_file
from data_prep.corpora.msp_podcast import MSPPodcast
from ser.emotions import EMOTIONS, LETTER_TO_WORD, NO_AGREEMENT, OTHER

ROOT = Path(__file__).resolve().parents[1]
FAST = settings(
    max_examples=40,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Spellings an annotator's primary emotion takes in the releases, and what they mean.
PRIMARY_WORDS = {
    **{word: letter for letter, word in LETTER_TO_WORD.items()},
    "Happiness": "H",
    "Anger": "A",
    "Sadness": "S",
    "neutral": "N",
    "Other-Bored": "O",
    "Other - hard to say": "O",
    "other": "O",
}
# Text a file may hold anywhere: letters, digits, the separators that matter to
# the parsers (; , : " ' space tab) and a few non-ASCII characters. No line breaks:
# line numbers are checked, and a real label file has none inside a field.
FIELD_TEXT = st.text(
    alphabet=st.characters(
        codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp"), include_characters=";,:\"' \t"
    ),
    max_size=24,
)
WORKERS = st.sampled_from([f"WORKER{n:08d}" for n in range(1, 9)])
TURNS = st.sampled_from([f"MSP-PODCAST_{n // 10:04d}_{n % 10:04d}.wav" for n in range(12)])
SCORE = st.floats(1.0, 7.0, allow_nan=False).map(lambda x: f"{x:.1f}")
SECONDARY = st.sampled_from(["", "Concerned", "Concerned,Frustrated", "Amused, Annoyed"])


@st.composite
def annotation(draw):
    """One well-formed v1.11 annotation: (FileName, Worker, primary word, secondary, EmoDetail)."""
    turn, worker = draw(TURNS), draw(WORKERS)
    word, secondary = draw(st.sampled_from(sorted(PRIMARY_WORDS))), draw(SECONDARY)
    end = draw(st.sampled_from([";", "", "; "]))  # the last semicolon is optional
    detail = f"{worker}; {word}; {secondary}; A:{draw(SCORE)}; V:{draw(SCORE)}; D:{draw(SCORE)}{end}"
    return turn, worker, word, secondary, detail


def read_consensus_labels(folder):
    return MSPPodcast(folder).consensus()


def read_detailed_labels(folder):
    """Odd rows are errors here (``strict``): the tests check that each one is named."""
    return read_detailed_file(Path(folder) / "Labels" / "labels_detailed.csv", strict=True).table


def _csv_text(header, rows):
    stream = io.StringIO()
    writer = csv.writer(stream, quoting=csv.QUOTE_ALL, lineterminator="\n")  # as the v1.11 release
    writer.writerow(header)
    writer.writerows(rows)
    return stream.getvalue()


def _write_labels(folder, name, text):
    path = Path(folder) / "Labels" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _assert_names_a_row(error, path, n_rows):
    """The documented error form: ``<path>:<line>: problem`` with a line of the file."""
    assert error.path == str(path)
    assert str(error).startswith(f"{path}:")
    assert error.where is None or 1 <= int(error.where) <= n_rows + 1, str(error)


def _detailed_csv(annotations, layout):
    """The annotations as a v1.11 (``EmoDetail``) or v1.6 (one column per field) file."""
    if layout == "v1.11":
        return _csv_text(["FileName", "EmoDetail"], [(a[0], a[4]) for a in annotations])
    header = ["FileName", "Workers", "EmoClass_Major", "EmoClass_Second", "EmoAct", "EmoVal", "EmoDom"]
    return _csv_text(
        header,
        [
            (turn, worker, word, secondary, "4.0", "4.0", "4.0")
            for turn, worker, word, secondary, _ in annotations
        ],
    )


@FAST
@given(st.lists(annotation(), min_size=1, max_size=30), st.sampled_from(["v1.11", "v1.6"]))
def test_well_formed_detailed_labels_read_back_exactly(annotations, layout):
    with tempfile.TemporaryDirectory() as folder:
        _write_labels(folder, "labels_detailed.csv", _detailed_csv(annotations, layout))
        detailed = read_detailed_labels(folder)
    assert detailed["FileName"].tolist() == [a[0] for a in annotations]
    assert detailed["Worker"].tolist() == [a[1] for a in annotations]
    assert detailed["Emotion"].tolist() == [PRIMARY_WORDS[a[2]] for a in annotations]
    assert detailed["Secondary"].tolist() == [a[3] for a in annotations]


@st.composite
def damaged_detail(draw):
    """A well-formed EmoDetail with one of its fields replaced by random text, or random text."""
    _, worker, word, secondary, detail = draw(annotation())
    fields = [worker, word, secondary, "A:4.0", "V:4.0", "D:4.0"]
    how = draw(st.sampled_from(["field", "drop", "text"]))
    if how == "text":
        return draw(FIELD_TEXT)
    if how == "drop":
        del fields[draw(st.integers(0, len(fields) - 1))]
    else:
        fields[draw(st.integers(0, len(fields) - 1))] = draw(FIELD_TEXT)
    return "; ".join(fields) + ";"


@FAST
@given(good=st.lists(annotation(), min_size=0, max_size=8), bad=damaged_detail(), after=st.integers(0, 8))
def test_random_emo_detail_parses_or_names_its_row(good, bad, after):
    rows = [(turn, detail) for turn, _, _, _, detail in good]
    position = min(after, len(rows))
    rows.insert(position, ("MSP-PODCAST_0099_0001.wav", bad))
    with tempfile.TemporaryDirectory() as folder:
        path = _write_labels(folder, "labels_detailed.csv", _csv_text(["FileName", "EmoDetail"], rows))
        lenient = read_detailed_file(path)  # a corpus-wide job: the odd row is left out and listed
        try:
            detailed = read_detailed_labels(folder)
        except LabelFileError as error:
            event(f"rejected: {error.problem.split(' (')[0].split(':')[0][:40]}")
            _assert_names_a_row(error, path, len(rows))
            # Only the random row can be wrong: the error points at it (header = line 1).
            assert error.where == position + 2, str(error)
            assert [(row.line, row.reason) for row in lenient.skipped] == [(error.where, error.problem)]
            assert lenient.table["Worker"].tolist() == [a[1] for a in good]
            return
    assert lenient.skipped == []
    event("read")
    assert len(detailed) == len(rows)
    assert set(detailed["Emotion"]) <= set(EMOTIONS + (OTHER,))
    assert (
        detailed["Worker"].str.len().gt(0).all()
        and (detailed["Worker"] == detailed["Worker"].str.strip()).all()
    )
    # The good rows still read back as written, whichever parser the random row forced.
    kept = detailed.drop(index=position).reset_index(drop=True)
    assert kept["Worker"].tolist() == [a[1] for a in good]
    assert kept["Emotion"].tolist() == [PRIMARY_WORDS[a[2]] for a in good]


CONSENSUS_VALUES = {
    "FileName": TURNS,
    "EmoClass": st.sampled_from(CONSENSUS_CLASSES),
    "EmoAct": st.one_of(SCORE, st.just("")),  # an attribute may be empty
    "EmoVal": SCORE,
    "EmoDom": SCORE,
    "SpkrID": st.one_of(st.just("Unknown"), st.integers(0, 9999).map(lambda n: f"{n:04d}")),
    "Gender": st.sampled_from(["Female", "Male", "Unknown"]),
    "Split_Set": st.sampled_from(SPLITS),
}


@st.composite
def damaged_consensus(draw):
    """A valid consensus table, then one cell replaced by random text or one column dropped.

    Returns ``(header, rows, damaged_row)``; ``damaged_row`` is None for a dropped column.
    """
    n_rows = draw(st.integers(1, 10))
    names = draw(st.lists(TURNS, min_size=n_rows, max_size=n_rows, unique=True))
    rows = [[name] + [draw(CONSENSUS_VALUES[col]) for col in CONSENSUS_COLUMNS[1:]] for name in names]
    header = list(CONSENSUS_COLUMNS)
    if draw(st.booleans()) and draw(st.booleans()):
        dropped = draw(st.integers(0, len(header) - 1))
        del header[dropped]
        return header, [row[:dropped] + row[dropped + 1 :] for row in rows], None
    damaged = draw(st.integers(0, n_rows - 1))
    rows[damaged][draw(st.integers(0, len(header) - 1))] = draw(FIELD_TEXT)
    return header, rows, damaged


@FAST
@given(damaged_consensus())
def test_random_consensus_table_is_read_or_rejected_with_its_line(table):
    header, rows, damaged = table
    with tempfile.TemporaryDirectory() as folder:
        path = _write_labels(folder, "labels_consensus.csv", _csv_text(header, rows))
        try:
            labels = read_consensus_labels(folder)
        except LabelFileError as error:
            event(f"rejected: {error.problem.split(':')[0].split(chr(39))[0]}")
            _assert_names_a_row(error, path, len(rows))
            # A dropped column is a header problem (line 1); a bad cell is its row's line
            # (a FileName made equal to a later row's is reported at that later duplicate).
            if damaged is None:
                assert error.where == 1, str(error)
            elif "duplicate FileName" not in error.problem:
                assert error.where == damaged + 2, str(error)
            return
    event("read")
    assert damaged is not None, "a missing column must be an error"
    assert set(labels["EmoClass"]) <= set(CONSENSUS_CLASSES)
    assert set(labels["Split_Set"]) <= set(SPLITS)
    assert labels["FileName"].is_unique and labels["FileName"].str.len().gt(0).all()
    assert labels["EmoAct"].dtype == float and len(labels) == len(rows)


@st.composite
def annotation_table(draw):
    """Consensus and detailed tables of the same turns: 1..6 votes per turn, any worker."""
    n_turns = draw(st.integers(1, 12))
    names = [f"turn{i:02d}.wav" for i in range(n_turns)]
    labels = CONSENSUS_CLASSES
    consensus = pd.DataFrame(
        {
            "FileName": names,
            "EmoClass": draw(st.lists(st.sampled_from(labels), min_size=n_turns, max_size=n_turns)),
            "Split_Set": draw(st.lists(st.sampled_from(SPLITS), min_size=n_turns, max_size=n_turns)),
        }
    )
    votes = [
        (name, draw(WORKERS), draw(st.sampled_from(EMOTIONS + (OTHER,))))
        for name in names
        for _ in range(draw(st.integers(1, 6)))
    ]
    detailed = pd.DataFrame(votes, columns=["FileName", "Worker", "Emotion"])
    return consensus, detailed


@FAST
@given(annotation_table(), st.floats(0.0, 1.0), st.randoms(use_true_random=False))
def test_recomputed_consensus_is_a_class_and_ignores_row_order(tables, threshold, random):
    consensus, detailed = tables
    labels = recompute_consensus(detailed, consensus, threshold=threshold)
    assert labels.index.tolist() == consensus["FileName"].tolist()
    assert set(labels) <= set(EMOTIONS) | {NO_AGREEMENT, OTHER}

    order = list(range(len(detailed)))
    random.shuffle(order)
    shuffled = detailed.iloc[order].reset_index(drop=True)
    pd.testing.assert_series_equal(recompute_consensus(shuffled, consensus, threshold=threshold), labels)
    pd.testing.assert_frame_equal(
        relabel(shuffled, consensus, threshold=threshold), relabel(detailed, consensus, threshold=threshold)
    )


@FAST
@given(annotation_table(), st.floats(0.0, 1.0), st.booleans())
def test_consensus_from_written_files_equals_consensus_from_tables(tables, threshold, as_json):
    consensus, detailed = tables
    with tempfile.TemporaryDirectory() as folder:
        rows = [
            (turn, f"{worker}; {LETTER_TO_WORD[letter]}; ; A:4.0; V:4.0; D:4.0;")
            for turn, worker, letter in detailed.itertuples(index=False)
        ]
        _write_labels(folder, "labels_detailed.csv", _csv_text(["FileName", "EmoDetail"], rows))
        full = consensus.assign(EmoAct="4.0", EmoVal="4.0", EmoDom="4.0", SpkrID="1", Gender="Male")
        if as_json:  # some releases ship the consensus as JSON keyed by FileName
            _write_labels(folder, "labels_consensus.json", full.set_index("FileName").to_json(orient="index"))
        else:
            _write_labels(
                folder,
                "labels_consensus.csv",
                _csv_text(CONSENSUS_COLUMNS, full[list(CONSENSUS_COLUMNS)].values.tolist()),
            )
        from_files = recompute_consensus(
            read_detailed_labels(folder), read_consensus_labels(folder), threshold
        )
    pd.testing.assert_series_equal(from_files, recompute_consensus(detailed, consensus, threshold))


HYPOTHESIS_BESIDE_SPEECHBRAIN = """
import speechbrain.dataio.dataset  # registers lazy modules, some of them unimportable here
from hypothesis import given, settings, strategies as st


@settings(max_examples=5, database=None)
@given(st.integers())
def test_runs(number):
    assert number == number
"""


def test_hypothesis_runs_beside_speechbrain_lazy_modules(tmp_path):
    # Regression for tests/conftest.py: without its fix, hypothesis's scan of sys.modules
    # imports SpeechBrain's k2 lazy module and the session dies (INTERNALERROR).
    (tmp_path / "test_beside.py").write_text(HYPOTHESIS_BESIDE_SPEECHBRAIN)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "tests.conftest",
            "--rootdir",
            str(tmp_path),
            "-c",
            "/dev/null",
            str(tmp_path / "test_beside.py"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1 passed" in done.stdout


@pytest.mark.parametrize("word", sorted(PRIMARY_WORDS))
def test_every_primary_spelling_used_here_is_understood(word, tmp_path):
    # The strategies above lean on PRIMARY_WORDS: check it against the reader once.
    _write_labels(
        tmp_path,
        "labels_detailed.csv",
        _csv_text(["FileName", "EmoDetail"], [("a.wav", f"W1; {word}; ; A:1; V:1; D:1;")]),
    )
    assert read_detailed_labels(tmp_path)["Emotion"].tolist() == [PRIMARY_WORDS[word]]
