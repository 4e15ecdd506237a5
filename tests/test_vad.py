"""Speech segments by voice activity (real Silero VAD), and ``ser.predict --segment vad``.

The recording is espeak-ng speech with silences between the sentences (faint noise, as in a real
room), so where the speech lies is known to the sample.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile
import torch

from ser.emotions import EMOTIONS
from ser.errors import UserInputError
from ser.inference.vad import VadOptions, speech_segments, split_long_segments
from tests.conftest import THREADS

pytest.importorskip("silero_vad")

ROOT = Path(__file__).resolve().parents[1]
RATE = 16000
SENTENCES = [("en-us+f3", "Good morning, everyone, and welcome back to the show."),
             ("en-us+m3", "I honestly cannot believe what happened yesterday."),
             ("en-us+f2", "Well, that is the end of our story for today.")]
# Silence before each sentence, and after the last: the 9 s gap is the long silence of the tests.
GAPS = (1.5, 2.0, 9.0, 1.0)


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """``(path, [(start, end), ...])``: three sentences and where they are, in seconds."""
    from data_prep.mini_corpus.espeak import EspeakSynthesizer

    synthesizer = EspeakSynthesizer(RATE)
    rng = np.random.default_rng(0)
    pieces, truth, position = [], [], 0.0
    for (voice, text), gap in zip(SENTENCES, GAPS, strict=False):
        speech = synthesizer.synthesize(text, voice=voice)
        pieces += [np.zeros(round(gap * RATE), np.float32), speech]
        truth.append((position + gap, position + gap + len(speech) / RATE))
        position = truth[-1][1]
    pieces.append(np.zeros(round(GAPS[-1] * RATE), np.float32))
    audio = np.concatenate(pieces)
    audio += rng.normal(0, 0.002, len(audio)).astype(np.float32)  # a room is never digital silence
    path = tmp_path_factory.mktemp("vad") / "talk_with_pauses.wav"
    soundfile.write(path, audio, RATE)
    return path, truth


def _waveform(path):
    audio, _ = soundfile.read(path, dtype="float32")
    return torch.from_numpy(audio)


def _overlap(a, b):
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))


def test_segments_are_at_the_speech_and_none_in_the_silence(recording):
    path, truth = recording
    threads = torch.get_num_threads()
    options = VadOptions()
    segments = speech_segments(_waveform(path), options)
    # Importing silero_vad sets torch to one thread: the VAD module gives the threads back.
    assert torch.get_num_threads() == threads
    print(f"\nspeech {[(round(a, 2), round(b, 2)) for a, b in truth]}\n"
          f"segments {[(round(a, 2), round(b, 2)) for a, b in segments]}")
    for sentence in truth:  # every sentence is found, nearly whole
        covered = sum(_overlap(sentence, segment) for segment in segments)
        assert covered >= 0.9 * (sentence[1] - sentence[0]), (sentence, segments)
    # Silero's speech probability decays over a few 32 ms frames after the last word.
    margin = options.padding + 0.3
    for segment in segments:  # every segment is speech (give or take the padding)
        assert any(_overlap(segment, (a - margin, b + margin)) == pytest.approx(segment[1] - segment[0])
                   for a, b in truth), (segment, truth)
    long_silence = (truth[1][1] + margin, truth[2][0] - margin)
    assert all(_overlap(segment, long_silence) == 0 for segment in segments)
    assert segments == sorted(segments) and all(a[1] <= b[0] for a, b in zip(segments, segments[1:],
                                                                               strict=False))


def test_long_speech_is_split_and_short_bursts_dropped(recording):
    path, truth = recording
    wav = _waveform(path)
    whole = speech_segments(wav)
    split = speech_segments(wav, VadOptions(max_segment=1.0))
    assert all(end - start <= 1.0 + 1e-9 for start, end in split)
    assert sum(b - a for a, b in split) == pytest.approx(sum(b - a for a, b in whole), abs=1e-6)
    # A minimum longer than every sentence leaves nothing.
    assert speech_segments(wav, VadOptions(min_speech=6.0)) == []


def test_silence_and_noise_have_no_segment():
    rng = np.random.default_rng(1)
    assert speech_segments(torch.zeros(10 * RATE)) == []
    assert speech_segments(torch.from_numpy(rng.normal(0, 0.002, 10 * RATE).astype(np.float32))) == []


def test_bad_options_are_one_clear_line():
    with pytest.raises(UserInputError, match="VAD threshold 1.5: must be between 0 and 1"):
        VadOptions(threshold=1.5)
    with pytest.raises(UserInputError, match="VAD max_segment 0: must be positive seconds"):
        VadOptions(max_segment=0)
    assert split_long_segments([(0.0, 25.0)], 10.0) == [(0.0, 25 / 3), (25 / 3, 50 / 3), (50 / 3, 25.0)]


@pytest.fixture(scope="module")
def system_a(debug_results):
    return debug_results / "system_a" / "1993"


def test_recognizer_classifies_the_speech_segments(system_a, recording):
    from ser.inference.recognizer import EmotionRecognizer

    path, _ = recording
    recognizer = EmotionRecognizer.from_folders([system_a])
    rows = recognizer.classify_timeline(path, segment="vad")
    segments = speech_segments(_waveform(path))
    found = [moment for row in rows for moment in (row.start, row.end)]
    assert found == pytest.approx([moment for segment in segments for moment in segment], abs=1 / RATE)
    # Each row is its segment classified as a turn of its own.
    again = recognizer.classify_segments(path, segments[:1])[0]
    assert again.probabilities == pytest.approx(rows[0].probabilities, abs=1e-6)
    with pytest.raises(ValueError, match="segment must be 'fixed' or 'vad'"):
        recognizer.classify_timeline(path, segment="words")


def _predict(*arguments):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": THREADS}
    return subprocess.run([sys.executable, "-m", "ser.predict", *map(str, arguments)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_predict_segment_vad_writes_rows_at_the_speech(system_a, recording, tmp_path):
    path, truth = recording
    silent = tmp_path / "room_tone.wav"
    soundfile.write(silent, np.random.default_rng(2).normal(0, 0.002, 8 * RATE).astype(np.float32), RATE)
    out = tmp_path / "preds.csv"
    done = _predict(path, silent, "--systems", system_a, "--out", out, "--segment", "vad", "--no_progress")
    print(f"\n$ python -m ser.predict talk_with_pauses.wav room_tone.wav --systems system_a/1993 "
          f"--out preds.csv --segment vad\n{done.stdout}{done.stderr[-2000:]}")
    assert done.returncode == 0
    assert f"no speech found: {silent}" in done.stdout
    timeline = pd.read_csv(tmp_path / "preds_timeline.csv")
    assert list(timeline.columns) == ["File", "Start", "End", "EmoClass", *EMOTIONS]
    assert set(timeline["File"]) == {str(path)}  # the room tone has no row
    assert set(timeline["EmoClass"]) <= set(EMOTIONS)
    rows = list(zip(timeline["Start"], timeline["End"], strict=True))
    assert len(rows) >= len(truth)
    margin = 0.4  # padding, Silero's decay after the last word, and the CSV's rounding
    for start, end in rows:
        assert any(a - margin <= start and end <= b + margin for a, b in truth), (start, end, truth)
    pngs = sorted((tmp_path / "preds_timeline").glob("*.png"))
    assert [p.name for p in pngs] == ["0000_talk_with_pauses.png", "0001_room_tone.png"]
    print(f"timeline figure: {pngs[0]}")


def test_predict_segment_fixed_is_the_timeline_of_windows(system_a, recording, tmp_path):
    path, _ = recording
    out = tmp_path / "preds.csv"
    done = _predict(path, "--systems", system_a, "--out", out, "--segment", "fixed", "--window", "4", "--hop",
                    "2", "--no_progress")
    assert done.returncode == 0, done.stderr[-3000:]
    timeline = pd.read_csv(tmp_path / "preds_timeline.csv")
    assert timeline["Start"].tolist()[:3] == [0.0, 2.0, 4.0]  # silence included: windows cover it all
    assert (timeline["End"] - timeline["Start"]).max() == pytest.approx(4.0)


def test_predict_bad_vad_option_is_one_line(system_a, recording, tmp_path):
    done = _predict(recording[0], "--systems", system_a, "--out", tmp_path / "p.csv", "--segment", "vad",
                    "--vad_threshold", "2")
    assert done.returncode == 2
    assert "VAD threshold 2.0: must be between 0 and 1" in done.stderr
    assert "Traceback" not in done.stderr
