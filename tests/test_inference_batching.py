"""Batched inference gives what one file at a time gives; the throughput benchmarks run and report.

The five systems are the session's ``debug_results`` (trained with ``--debug``); D and E read Whisper
transcripts decoded with the same options, so they share one recogniser.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from ser.emotions import EMOTIONS
from ser.inference.recognizer import EmotionRecognizer
from tests.conftest import SYSTEMS, THREADS

ROOT = Path(__file__).resolve().parents[1]
RATE = 16000


@pytest.fixture(scope="module")
def system_dirs(debug_results):
    return [debug_results / f"system_{s}" / "1993" for s in SYSTEMS]


@pytest.fixture(scope="module")
def fusion_dir(system_dirs, tmp_path_factory):
    from fusion.fuse import fuse_systems

    out = tmp_path_factory.mktemp("fusion")
    fuse_systems(system_dirs, out, folds=2)
    return out


@pytest.fixture(scope="module")
def recognizer(system_dirs, fusion_dir):
    return EmotionRecognizer.from_folders(system_dirs, fusion_dir, batch_size=3)


@pytest.fixture(scope="module")
def mixed_files(mini_corpus, tmp_path_factory):
    """Ten turns of varied lengths plus a 25 s file (several windows of the demo's 10 s)."""
    turns = sorted((mini_corpus / "Audios").glob("*.wav"))[::7][:10]
    pieces = [soundfile.read(path, dtype="float32")[0] for path in turns]
    folder = tmp_path_factory.mktemp("long")
    long_audio = np.concatenate(pieces * 4)[: 25 * RATE]
    soundfile.write(folder / "long_25s.wav", long_audio, RATE)
    return [*turns, folder / "long_25s.wav"]


def table(result, system=None):
    values = result.probabilities if system is None else result.system_probabilities[system]
    return np.array([values[c] for c in EMOTIONS])


def test_batched_posteriors_equal_one_file_at_a_time(recognizer, mixed_files):
    batched = recognizer.classify_files(mixed_files)
    single = [recognizer.classify_files([path])[0] for path in mixed_files]
    names = [s.name for s in recognizer.systems]
    assert len(names) == 5
    for together, alone in zip(batched, single, strict=True):
        assert together.error is None and together.file == alone.file
        for name in names:
            np.testing.assert_allclose(table(together, name), table(alone, name), atol=1e-5)
        np.testing.assert_allclose(table(together), table(alone), atol=1e-5)
        assert together.label == alone.label
        assert together.transcript == alone.transcript


def test_each_file_is_transcribed_once_for_all_text_systems(recognizer, mixed_files):
    text_systems = [s for s in recognizer.systems if s.whisper]
    assert len(text_systems) == 2 and len(recognizer.transcribers) == 1
    (key, backend) = next(iter(recognizer.transcribers.items()))
    transcribed = []
    real = backend.transcribe_many

    def counting(audios, batch_size):
        transcribed.extend(len(audio) for audio in audios)
        return real(audios, batch_size)

    backend.transcribe_many = counting
    try:
        results = recognizer.classify_files(mixed_files)
    finally:
        del backend.transcribe_many  # back to the class's method
    assert sorted(transcribed) == sorted(len(soundfile.read(p)[0]) for p in mixed_files)
    assert all(r.transcript is not None for r in results)


def bench(script, *args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": THREADS}
    command = [sys.executable, str(ROOT / "bench" / script), *map(str, args)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_predict_bench_prints_rates_and_shares(system_dirs, fusion_dir, mini_corpus):
    out = bench(
        "predict.py",
        "--files",
        4,
        "--data_folder",
        mini_corpus,
        "--systems",
        *system_dirs,
        "--fusion",
        fusion_dir,
        "--per_file",
    )
    assert "Whisper recognisers: 1; fusion: True" in out
    rates = re.findall(r"4 files in [\d.]+ s = ([\d.]+) files/s", out)
    assert len(rates) == 2 and all(float(rate) > 0 for rate in rates)
    shares = re.findall(
        r"^(read audio|ASR|speech encoders|text encoders|fusion|other)\s+[\d.-]+\s+(-?[\d.]+)%",
        out,
        flags=re.MULTILINE,
    )
    assert len(shares) == 12
    assert 99 <= sum(float(share) for _, share in shares[:6]) <= 101
    difference = float(re.search(r"per-file\| fused probability: (\S+)", out).group(1))
    assert difference < 1e-5


def test_transcribe_bench_prints_speed_up_and_agreement(mini_corpus):
    # Beam 5 (the default): greedy decoding of a padded batch may change a word (measured: 97 % agreement).
    out = bench("transcribe.py", "--turns", 4, "--batch_size", 2, "--beams", 5, "--corpus", mini_corpus)
    row = re.search(
        r"^\s+5\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)x\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", out, flags=re.MULTILINE
    )
    assert row, out
    per_call, batched, speed_up, agreement, accuracy, _ = map(float, row.groups())
    assert per_call > 0 and batched > 0 and speed_up == pytest.approx(batched / per_call, rel=0.02)
    # Same decoder on the same turns: the two ways agree on nearly every word, and both hear the speech.
    assert agreement >= 0.95 and accuracy >= 0.4
    windows = re.findall(r"^\s+(\d+)s\s+([\d.]+)\s+([\d.]+)x\s+([\d.]+)\s+([\d.]+)$", out, flags=re.MULTILINE)
    assert [w[0] for w in windows] == ["30", "10"], out
    (_, _, same, itself, _), (_, _, _, agreement_10, accuracy_10) = [tuple(map(float, w)) for w in windows]
    assert same == 1.0 and itself == 1.0  # the 30 s row is the reference
    assert agreement_10 >= 0.6 and accuracy_10 >= 0.4, out  # the same speech heard on a shorter window


#: Turn lengths of the batched-equals-alone check: 0.5 s to 20 s, spread log-uniformly, shuffled so
#: that every batch mixes short and long turns before the recognizer sorts them.
MIXED_SECONDS = [20.0, 0.5, 3.2, 11.7, 0.9, 6.1, 1.6, 14.0]
#: Largest probability difference allowed between a turn classified in a batch and alone (float32
#: rounding through a padded batch: measured below 1e-6 on these tiny encoders).
BATCH_TOLERANCE = 1e-5


def _tiny_family_model(family, tiny_models):
    """A one-branch network (attention pooling, the one that must mask padding) of a tiny encoder."""
    import torch

    from ser.nn.encoders import SpeechEncoder, TextEncoder
    from ser.nn.model import EmotionClassifier, SpeechBranch, TargetHeads, TextBranch
    from ser.nn.pooling import AttentionPooling
    from ser.nn.tiny_models import build_whisper_encoder

    torch.manual_seed(0)
    if family == "text":
        encoder = TextEncoder(tiny_models / "roberta", output_norm=True)
        branches = {"text_branches": [TextBranch(encoder, AttentionPooling(encoder.output_size))]}
    else:
        source = build_whisper_encoder(tiny_models) if family == "whisper" else tiny_models / family
        encoder = SpeechEncoder(source, save_path=None)
        branches = {"speech_branches": [SpeechBranch(encoder, AttentionPooling(encoder.output_size))]}
    return EmotionClassifier(TargetHeads(encoder.output_size, classes=EMOTIONS), **branches).eval()


@pytest.mark.parametrize("family", ["wavlm", "hubert", "whisper", "text"])
def test_batched_equals_one_turn_at_a_time_for_every_encoder_family(family, tiny_models):
    import torch

    from ser.inference.loading import LoadedSystem
    from ser.targets import Targets

    model = _tiny_family_model(family, tiny_models)
    generator = torch.Generator().manual_seed(1)
    wavs = [0.1 * torch.randn(int(s * RATE), generator=generator) for s in MIXED_SECONDS]
    if family == "text":
        # Transcripts of 1 to 40 words, as long as the turns: the padded tokens must not count.
        words = "well i really think that it was not what we wanted at all you know".split()
        texts = [" ".join(words[i % len(words)] for i in range(max(1, round(2 * s)))) for s in MIXED_SECONDS]
        with torch.inference_mode():
            alone = torch.cat([model(texts=[t])["log_probs"] for t in texts]).exp()
            for batch_size in (1, 3, 8):
                batched = torch.cat([model(texts=texts[i : i + batch_size])["log_probs"]
                                     for i in range(0, len(texts), batch_size)]).exp()
                torch.testing.assert_close(batched, alone, atol=BATCH_TOLERANCE, rtol=0)
        assert float(alone.std(dim=0).max()) > 1e-4  # the turns' answers differ: a real check
        return
    system = LoadedSystem(family, tiny_models, model, None, None, Targets(classes=EMOTIONS))
    recognizer = EmotionRecognizer([system], batch_size=1)
    alone = np.array([table(r) for r in recognizer.classify_batch(wavs, sample_rate=RATE)])
    for batch_size in (3, 8):
        recognizer.batch_size = batch_size
        batched = np.array([table(r) for r in recognizer.classify_batch(wavs, sample_rate=RATE)])
        np.testing.assert_allclose(batched, alone, atol=BATCH_TOLERANCE, rtol=0)
    assert alone.std(axis=0).max() > 1e-4
