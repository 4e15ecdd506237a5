"""Inference on new audio: ser.inference.EmotionRecognizer and the ser.predict CLI.

Systems A (speech only) and D (speech + Whisper text) are trained in debug mode on the mini corpus,
keeping their checkpoints (``--debug_persistently``: a plain ``--debug`` run deletes them).
"""

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile
from scipy.signal import resample_poly

from ser.emotions import EMOTIONS
from ser.inference.recognizer import EmotionRecognizer, window_starts
from ser.io.posteriors import read_posteriors
from tests.conftest import THREADS

ROOT = Path(__file__).resolve().parents[1]
RATE = 16000


@pytest.fixture(scope="module")
def systems(debug_results):
    """A speech-only (A) and a speech + text (D) system trained in debug mode."""
    return {system: debug_results / f"system_{system}" / "1993" for system in ("a", "d")}


@pytest.fixture(scope="module")
def recognizer(systems):
    return EmotionRecognizer.from_folders([systems["a"], systems["d"]])


@pytest.fixture(scope="module")
def dev_turns(systems, mini_corpus):
    """Dev turns that both systems wrote posteriors for (name → path)."""
    names = read_posteriors(systems["a"] / "posteriors" / "valid.csv").index
    names = names.intersection(read_posteriors(systems["d"] / "posteriors" / "valid.csv").index)
    return {name: mini_corpus / "Audios" / name for name in sorted(names)[:6]}


@pytest.fixture(scope="module")
def odd_files(mini_corpus, tmp_path_factory):
    """A 44.1 kHz stereo file, a 40 s file, a 0.3 s file and a 20 ms file (under 400 samples)."""
    folder = tmp_path_factory.mktemp("odd_audio")
    turns = sorted((mini_corpus / "Audios").glob("*.wav"))
    first, _ = soundfile.read(turns[0], dtype="float32")
    left = resample_poly(first, 441, 160)
    soundfile.write(folder / "stereo_44k.wav", np.stack([left, 0.5 * left], axis=1), 44100)
    pieces, total = [], 0
    for turn in turns:
        audio, _ = soundfile.read(turn, dtype="float32")
        pieces.append(audio)
        total += len(audio)
        if total >= 40 * RATE:
            break
    soundfile.write(folder / "long_40s.wav", np.concatenate(pieces)[: 40 * RATE], RATE)
    soundfile.write(folder / "short_0.3s.flac", first[: int(0.3 * RATE)], RATE)
    soundfile.write(folder / "tiny_20ms.wav", first[RATE : RATE + 320], RATE)
    return folder


def probabilities(result, system=None):
    table = result.probabilities if system is None else result.system_probabilities[system]
    return np.array([table[c] for c in EMOTIONS])


def test_window_starts_cover_the_turn_without_slivers():
    for n_samples in (1, 9, 10, 11, 25, 40, 99):
        starts = window_starts(n_samples, 10)
        assert starts[0] == 0 and min(n_samples, starts[-1] + 10) == n_samples
        assert all(b - a <= 10 for a, b in zip(starts, starts[1:], strict=False))
        assert all(n_samples - start >= min(10, n_samples) for start in starts)


def test_dev_turns_match_the_posteriors_train_py_wrote(recognizer, systems, dev_turns):
    """The loading path is the trained model: same posteriors as train.py's evaluation."""
    results = recognizer.classify_files(list(dev_turns.values()))
    manifest = json.loads((systems["d"] / "manifests" / "valid.json").read_text())
    for system in ("a", "d"):
        written = read_posteriors(systems[system] / "posteriors" / "valid.csv")
        for name, result in zip(dev_turns, results, strict=True):
            assert result.error is None
            np.testing.assert_allclose(
                probabilities(result, f"system_{system}"), written.loc[name].to_numpy(), atol=1e-4
            )
    for name, result in zip(dev_turns, results, strict=True):
        # Same Whisper and decoding options as the training transcripts.
        assert result.transcript == manifest[Path(name).stem]["transcript"]
        average = (probabilities(result, "system_a") + probabilities(result, "system_d")) / 2
        np.testing.assert_allclose(probabilities(result), average, atol=1e-9)
        assert abs(probabilities(result).sum() - 1) < 1e-6
        assert result.label == EMOTIONS[int(np.argmax(probabilities(result)))]


def test_any_rate_channels_and_length(recognizer, odd_files, caplog):
    paths = sorted(odd_files.iterdir())
    with caplog.at_level(logging.WARNING, logger="ser.audio"):
        results = recognizer.classify_files(paths)
    assert "44100 Hz, resampled" in caplog.text and "2 channels" in caplog.text
    for path, result in zip(paths, results, strict=True):
        assert result.error is None, result.error
        assert result.file == str(path)
        assert abs(probabilities(result).sum() - 1) < 1e-6
        assert result.label == EMOTIONS[int(np.argmax(probabilities(result)))]
        assert result.transcript is not None


def test_long_turn_is_the_average_of_its_windows(systems, odd_files, tmp_path):
    recognizer = EmotionRecognizer.from_folders([systems["a"]])
    window = recognizer.systems[0].window_samples
    audio, _ = soundfile.read(odd_files / "long_40s.wav", dtype="float32")
    starts = window_starts(len(audio), window)
    assert len(starts) >= 4
    pieces = []
    for index, start in enumerate(starts):
        pieces.append(tmp_path / f"window_{index}.wav")
        soundfile.write(pieces[-1], audio[start : start + window], RATE)
    whole, *windows = recognizer.classify_files([odd_files / "long_40s.wav", *pieces])
    expected = np.mean([probabilities(r) for r in windows], axis=0)
    np.testing.assert_allclose(probabilities(whole), expected, atol=1e-5)


def test_speech_only_system_needs_no_whisper(systems, dev_turns):
    recognizer = EmotionRecognizer.from_folders([systems["a"]])
    assert recognizer.transcribers == {}
    (result,) = recognizer.classify_files(list(dev_turns.values())[:1])
    assert result.transcript is None and list(result.system_probabilities) == ["system_a"]


def test_folder_without_checkpoint_is_a_clear_error(systems, tmp_path):
    folder = tmp_path / "system_a" / "1993"
    folder.mkdir(parents=True)
    (folder / "hyperparams.yaml").write_text((systems["a"] / "hyperparams.yaml").read_text())
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        EmotionRecognizer.from_folders([folder])


def predict_cli(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": THREADS}
    command = [sys.executable, "-m", "ser.predict", *map(str, args), "--no_progress"]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_cli_reports_bad_files_and_classifies_the_others(systems, dev_turns, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    good = list(dev_turns.values())[:2]
    for path in good:
        (inputs / path.name).write_bytes(path.read_bytes())
    soundfile.write(inputs / "empty.wav", np.zeros(0, np.float32), RATE)
    (inputs / "corrupt.wav").write_bytes(b"RIFF\x00\x00not really a wave file" * 8)
    (inputs / "notes.txt").write_text("not audio: ignored in a folder")
    out = tmp_path / "preds.csv"

    done = predict_cli(inputs, "--systems", systems["a"], "--out", out)

    assert done.returncode == 1, done.stderr[-3000:]
    table = pd.read_csv(out, keep_default_na=False)
    assert list(table.columns) == ["File", "EmoClass", *EMOTIONS, "Error", "Flag"]
    expected_names = sorted(["corrupt.wav", "empty.wav", *(p.name for p in good)])
    assert sorted(Path(f).name for f in table["File"]) == expected_names
    rows = table.set_index(table["File"].map(lambda f: Path(f).name))
    assert "empty" in rows.loc["empty.wav", "Error"] and "empty.wav" in rows.loc["empty.wav", "Error"]
    assert "corrupt.wav" in rows.loc["corrupt.wav", "Error"]
    for path in good:
        row = rows.loc[path.name]
        assert row["Error"] == "" and row["EmoClass"] in EMOTIONS
        values = row[list(EMOTIONS)].astype(float).to_numpy()
        assert abs(values.sum() - 1) < 1e-4 and row["EmoClass"] == EMOTIONS[int(values.argmax())]
    assert "Classified 2 of 4 files" in done.stdout
    assert "corrupt.wav" in done.stdout and "empty.wav" in done.stdout


def test_cli_with_fusion(systems, recognizer, dev_turns, tmp_path):
    from fusion.fuse import fuse_systems
    from ser.fusion_model import load_fusion

    fusion_dir = tmp_path / "fusion"
    fuse_systems([systems["a"], systems["d"]], fusion_dir, folds=2)
    files = list(dev_turns.values())[:3]
    out = tmp_path / "fused.csv"

    # Systems in the other order than the fusion's: they are matched by name.
    done = predict_cli(*files, "--systems", systems["d"], systems["a"], "--fusion", fusion_dir, "--out", out)

    assert done.returncode == 0, done.stderr[-3000:]
    table = pd.read_csv(out, keep_default_na=False).set_index("File")
    model = load_fusion(fusion_dir)
    for result in recognizer.classify_files(files):
        blocks = [probabilities(result, "system_a")[None], probabilities(result, "system_d")[None]]
        expected = model.predict_proba(blocks)[0]
        written = table.loc[str(result.file), list(EMOTIONS)].astype(float)
        np.testing.assert_allclose(written, expected, atol=2e-4)
        assert table.loc[str(result.file), "EmoClass"] == model.predict(blocks)[0]
    with pytest.raises(ValueError, match="pass exactly the fused systems"):
        EmotionRecognizer.from_folders([systems["a"]], fusion_dir=fusion_dir)


def test_cli_console_shows_results_and_warnings_and_logs_the_libraries(
    systems, dev_turns, odd_files, tmp_path
):
    files = [*list(dev_turns.values())[:2], odd_files / "stereo_44k.wav"]
    out = tmp_path / "preds.csv"

    done = predict_cli(*files, "--systems", systems["a"], systems["d"], "--out", out)

    assert done.returncode == 0, done.stderr[-3000:]
    console = done.stdout + done.stderr
    # Loading two systems (one with Whisper and a text encoder) is chatty: none of it is shown ...
    for chatter in ("INFO", "Loading weights", "Loading a checkpoint", "FutureWarning", "UserWarning"):
        assert chatter not in console, chatter
    # ... but the warnings about the user's files are, and the results, and where the log is.
    # One line sums up the converted files; each is named in the log.
    assert "WARNING: 1 audio file was converted to 16 kHz mono: 1 resampled (44100 Hz: 1); 1 down-mixed" \
        in done.stderr
    assert "stereo_44k.wav: 44100 Hz" not in done.stderr
    assert "Classified 3 of 3 files" in done.stdout
    log = tmp_path / "preds.log"
    assert f"Messages of the libraries: {log}" in done.stdout
    text = log.read_text()
    assert "speechbrain.utils.checkpoints INFO: Loading a checkpoint" in text
    assert "stereo_44k.wav: 44100 Hz, resampled to 16000 Hz" in text


def test_cli_without_out_prints_a_table_and_scans_every_audio_format(systems, dev_turns, tmp_path):
    """No --out: a table of labels on the console; a folder contributes .mp3 and .flac files too;
    piped output gets no progress bar (no --no_progress given)."""
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    first = list(dev_turns.values())[0]
    audio, _ = soundfile.read(first, dtype="float32")
    soundfile.write(inputs / "turn.mp3", audio, RATE)
    soundfile.write(inputs / "turn.flac", audio, RATE)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": THREADS}
    command = [sys.executable, "-m", "ser.predict", str(inputs), "--systems", str(systems["a"]),
               str(systems["d"]), "--top_k", "2", "--log", str(tmp_path / "predict.log")]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["File", "Emotion", "Transcript"]
    rows = {Path(line.split()[0]).name: line for line in lines[1:3]}
    assert set(rows) == {"turn.flac", "turn.mp3"}
    # Two classes per row, with full names and two-decimal probabilities.
    for row in rows.values():
        assert len(re.findall(r"\b[ACDFHNSU] [A-Z][a-z]+ [01]\.\d\d\b", row)) == 2, row
    assert "Classified 2 of 2 files" in done.stdout and "predictions in" not in done.stdout
    assert "classifying" not in done.stderr and "\r" not in done.stderr  # no progress bar when piped
