"""Whisper transcription: real models on espeak speech, cache repair, resume, shards."""

import difflib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from data_prep.corpora import open_corpus
from data_prep.transcribe import BadAudioError, main, read_audio_16k, transcribe_turns
from data_prep.transcript_cache import CacheError, TranscriptCache, read_transcripts_csv
from ser.asr import DecodeOptions, bundled_tiny_en_path, load_backend

REPO = Path(__file__).resolve().parents[1]
ALL_SPLITS = ["Train", "Development", "Test1", "Test2", "Test3"]


def words(text):
    return re.findall(r"[a-z0-9']+", text.lower())


def word_accuracy(hypothesis, reference):
    """Fraction of reference words matched in order (1 - deletions/substitutions rate)."""
    ref = words(reference)
    matcher = difflib.SequenceMatcher(a=ref, b=words(hypothesis), autojunk=False)
    return sum(block.size for block in matcher.get_matching_blocks()) / max(1, len(ref))


def sorted_turns(corpus):
    """All turns the CLI sees for ALL_SPLITS, in its (sorted) order."""
    return sorted(open_corpus(corpus).turns(ALL_SPLITS)["FileName"])


def cache_lines(out):
    lines = []
    for path in sorted((Path(out) / "cache").glob("*/shard-*.jsonl")):
        lines += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return lines


def cli_args(corpus, out, *extra):
    return ["--data_folder", str(corpus), "--splits", *ALL_SPLITS, "--model", "bundled-tiny.en",
            "--out", str(out), "--beam_size", "1", "--device", "cpu", "--no_progress", *extra]


@pytest.fixture(scope="module")
def tiny_en():
    # Beam 2 so that the batched path exercises a real (batched) beam search.
    return load_backend("faster-whisper", bundled_tiny_en_path(), DecodeOptions(beam_size=2),
                        device="cpu")


@pytest.fixture(scope="module")
def spoken_turns(mini_corpus):
    """Twelve turns, spread over the corpus, whose spoken sentence is known (Transcripts/*.txt)."""
    corpus = open_corpus(mini_corpus)
    names = [n for n in sorted_turns(mini_corpus) if corpus.transcript(n) is not None]
    chosen = names[:: max(1, len(names) // 12)][:12]
    assert len(chosen) == 12, "the mini corpus should hold at least twelve transcribed turns"
    return {name: (corpus.audio_path(name), corpus.transcript_path(name).read_text()) for name in chosen}


def test_faster_whisper_tiny_en_gets_most_words_right(tiny_en, spoken_turns):
    run = transcribe_turns({n: p for n, (p, _) in spoken_turns.items()}, tiny_en, batch_size=6,
                           progress=False)
    accuracy = np.mean([word_accuracy(run.transcripts[n], ref) for n, (_, ref) in spoken_turns.items()])
    # tiny.en on expressive espeak speech: ~0.71 over the 80 transcribed turns
    # of the mini corpus (chance, for random words, is near 0).
    assert accuracy >= 0.55, run.transcripts
    assert run.n_new == 12 and run.audio_seconds > 12 and run.real_time_factor > 0


def test_batched_and_sequential_paths_agree(tiny_en, spoken_turns):
    audios = [read_audio_16k(path) for path, _ in spoken_turns.values()]
    sequential = tiny_en.transcribe_many(audios, batch_size=1)
    batched = tiny_en.transcribe_many(audios, batch_size=6)
    agreement = np.mean([word_accuracy(b, s) for b, s in zip(batched, sequential, strict=True)])
    assert agreement >= 0.9, (sequential, batched)


def test_short_window_transcripts_are_accurate_and_do_not_depend_on_batch_mates(spoken_turns):
    window = load_backend("faster-whisper", bundled_tiny_en_path(),
                          DecodeOptions(beam_size=2, window_seconds=10), device="cpu")
    turns = list(spoken_turns.values())
    audios = [read_audio_16k(path) for path, _ in turns]
    assert max(len(audio) for audio in audios) <= 10 * 16000  # all of them take the 10 s window
    one_by_one = window.transcribe_many(audios, batch_size=1)
    batched = window.transcribe_many(audios, batch_size=6)
    # As for the 30 s window: a batch changes the numerics of CTranslate2's matrix products, which
    # can flip a close beam, but a batch mate's length must not change a turn's window.
    agreement = np.mean([word_accuracy(b, s) for b, s in zip(batched, one_by_one, strict=True)])
    assert agreement >= 0.9, (one_by_one, batched)
    accuracy = np.mean([word_accuracy(text, ref) for text, (_, ref) in zip(one_by_one, turns, strict=True)])
    assert accuracy >= 0.55, one_by_one  # as the 30 s window (0.71 over the corpus, 0.77 with 10 s)


def test_turn_longer_than_the_short_window_keeps_the_30_s_window(tiny_en, spoken_turns):
    (first, _), (second, reference) = list(spoken_turns.values())[:2]
    # The second sentence starts after 10 s: a 10 s window would cut it off.
    silence = np.zeros(9 * 16000, np.float32)
    long_turn = np.concatenate([read_audio_16k(first), silence, read_audio_16k(second)])
    assert len(long_turn) > 10 * 16000
    window = load_backend("faster-whisper", bundled_tiny_en_path(),
                          DecodeOptions(beam_size=2, window_seconds=10), device="cpu")
    short = read_audio_16k(first)
    ours = window.transcribe_many([long_turn, short], batch_size=2)
    assert ours[0] == tiny_en.transcribe_many([long_turn, short], batch_size=2)[0]
    assert word_accuracy(ours[0], reference) >= 0.5, ours


def test_openai_whisper_loads_a_random_checkpoint_and_decodes(tmp_path):
    import torch
    from whisper.model import ModelDimensions, Whisper

    dims = ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=32, n_audio_head=2,
                           n_audio_layer=1, n_vocab=51864, n_text_ctx=32, n_text_state=32,
                           n_text_head=2, n_text_layer=1)
    torch.manual_seed(0)
    checkpoint = tmp_path / "tiny-random.pt"
    torch.save({"dims": dims.__dict__, "model_state_dict": Whisper(dims).state_dict()}, checkpoint)
    options = DecodeOptions(beam_size=1, temperatures=(0.0,), max_new_tokens=4)
    backend = load_backend("openai-whisper", checkpoint, options, device="cpu")
    assert backend.model.dims.n_audio_state == 32  # the checkpoint we built, not a hub model
    noise = np.random.default_rng(0).normal(scale=0.1, size=16000).astype(np.float32)
    one = backend.transcribe_many([noise], batch_size=1)
    two = backend.transcribe_many([noise, noise[:8000]], batch_size=2)
    assert all(isinstance(text, str) for text in one + two) and len(two) == 2


def test_audio_is_downmixed_and_resampled_with_a_warning(tmp_path, caplog):
    path = tmp_path / "stereo8k.wav"
    soundfile.write(path, np.zeros((4000, 2)), 8000)
    with caplog.at_level(logging.WARNING):
        audio = read_audio_16k(path)
    assert audio.shape == (8000,) and audio.dtype == np.float32
    assert "resampled" in caplog.text and "down-mixed" in caplog.text
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(BadAudioError, match="empty.wav"):
        read_audio_16k(tmp_path / "empty.wav")


def test_cache_repairs_a_cut_last_line_and_rejects_a_corrupt_middle(tmp_path, caplog):
    key = {"backend": "faster-whisper", "model": "m", "beam_size": 1}
    with TranscriptCache(tmp_path, key, "1of1") as cache:
        cache.append([{"FileName": "a.wav", "Transcript": "one"},
                      {"FileName": "b.wav", "Transcript": "two"}])
        path = cache.path
    with open(path, "ab") as stream:
        stream.write(b'{"FileName": "c.wav", "Transcr')  # killed mid-write
    with caplog.at_level(logging.WARNING), TranscriptCache(tmp_path, key, "1of1") as cache:
        assert sorted(cache.records()) == ["a.wav", "b.wav"]
        cache.append([{"FileName": "c.wav", "Transcript": "three"}])
    assert "cut mid-write" in caplog.text
    assert [json.loads(x)["FileName"] for x in path.read_text().splitlines()] == ["a.wav", "b.wav", "c.wav"]

    path.write_text(path.read_text().replace('"b.wav"', "oops", 1))
    with pytest.raises(CacheError, match=r"shard-1of1.jsonl, line 2"):
        TranscriptCache(tmp_path, key, "1of1")


def test_cache_never_mixes_options(tmp_path):
    first = TranscriptCache(tmp_path, {"model": "tiny", "beam_size": 5}, "1of1")
    first.append([{"FileName": "a.wav", "Transcript": "one"}])
    first.close()
    with TranscriptCache(tmp_path, {"model": "large-v3", "beam_size": 5}, "1of1") as other:
        assert other.records() == {}  # another model: a fresh folder
    options_file = first.directory / "options.json"
    options_file.write_text(json.dumps({"model": "edited"}))
    with pytest.raises(CacheError, match="options.json"):
        TranscriptCache(tmp_path, {"model": "tiny", "beam_size": 5}, "1of1")


def test_corrupt_cache_record_of_options_ends_in_one_line(mini_corpus, tmp_path):
    from tests.cli_helpers import assert_one_line_error, cli, python_module

    command = python_module("data_prep.transcribe", "--data_folder", mini_corpus, "--out", tmp_path,
                            "--model", bundled_tiny_en_path(), "--max_turns", "2", "--no_progress")
    assert cli(command).returncode == 0
    (options_file,) = (tmp_path / "cache").glob("*/options.json")
    options_file.write_text('{"model": "tiny.en", "beam')  # cut short
    cache_files = {p: p.read_bytes() for p in (tmp_path / "cache").rglob("*") if p.is_file()}
    done = cli(command)
    assert done.returncode == 2
    assert_one_line_error(done, "data_prep.transcribe: error:", f"{options_file}: corrupt",
                          "move that folder")
    assert {p: p.read_bytes() for p in cache_files} == cache_files


def test_cli_resumes_after_sigkill_without_redoing_or_losing_turns(mini_corpus, tmp_path):
    n_turns = 16
    out = tmp_path / "out"
    command = [sys.executable, "-m", "data_prep.transcribe",
               *cli_args(mini_corpus, out, "--batch_size", "2", "--max_turns", str(n_turns))]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(cache_lines(out)) < 2:
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "the first run never wrote its cache"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = {r["FileName"] for r in cache_lines(out)}  # complete lines only
    assert 2 <= len(done_before) < n_turns
    assert not (out / "transcripts.csv").exists()

    second = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    summary = second.stdout.strip().splitlines()[-1]
    assert f"transcribed {n_turns - len(done_before)} new turns, {len(done_before)} from cache" in summary

    names = [r["FileName"] for r in cache_lines(out)]
    assert sorted(names) == sorted(set(names))  # no turn transcribed twice
    transcripts = read_transcripts_csv(out / "transcripts.csv")
    assert list(transcripts) == sorted_turns(mini_corpus)[:n_turns]
    assert sum(bool(text) for text in transcripts.values()) >= n_turns - 2


def test_two_shards_cover_every_turn_once_and_merge(mini_corpus, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(cli_args(mini_corpus, out, "--shard", "1/2", "--max_turns", "6")) == 0
    assert not (out / "transcripts.csv").exists()  # half the turns only
    assert main(cli_args(mini_corpus, out, "--merge", "--max_turns", "6")) == 1
    assert main(cli_args(mini_corpus, out, "--shard", "2/2", "--max_turns", "6")) == 0
    shard_files = sorted((out / "cache").glob("*/shard-*.jsonl"))
    per_shard = [{json.loads(x)["FileName"] for x in p.read_text().splitlines()} for p in shard_files]
    assert [p.name for p in shard_files] == ["shard-1of2.jsonl", "shard-2of2.jsonl"]
    assert not per_shard[0] & per_shard[1] and len(per_shard[0]) == len(per_shard[1]) == 3
    expected = sorted_turns(mini_corpus)[:6]
    assert sorted(per_shard[0] | per_shard[1]) == expected
    assert list(read_transcripts_csv(out / "transcripts.csv")) == expected
    (out / "transcripts.csv").unlink()
    assert main(cli_args(mini_corpus, out, "--merge", "--max_turns", "6")) == 0
    assert list(read_transcripts_csv(out / "transcripts.csv")) == expected
    capsys.readouterr()


def test_bad_audio_is_listed_in_skipped_csv_and_the_rest_transcribed(mini_corpus, tmp_path, capsys):
    corpus = tmp_path / "corpus"
    (corpus / "Audios").mkdir(parents=True)
    (corpus / "Labels").symlink_to(Path(mini_corpus) / "Labels")
    for wav in (Path(mini_corpus) / "Audios").iterdir():
        (corpus / "Audios" / wav.name).symlink_to(wav)
    names = sorted_turns(mini_corpus)
    corrupt, empty = names[0], names[1]
    (corpus / "Audios" / corrupt).unlink()
    (corpus / "Audios" / corrupt).write_bytes(b"RIFF....WAVEjunk")
    (corpus / "Audios" / empty).unlink()
    soundfile.write(corpus / "Audios" / empty, np.zeros(0), 16000)

    out = tmp_path / "out"
    assert main(cli_args(corpus, out, "--max_turns", "4", "--batch_size", "4")) == 0
    skipped = (out / "skipped.csv").read_text().splitlines()
    assert skipped[0] == "FileName,Split,Reason" and len(skipped) == 3  # as preparation's (ser.skipped)
    assert skipped[1].startswith(f"{corrupt},") and "unreadable" in skipped[1]
    assert skipped[2].startswith(f"{empty},") and "empty" in skipped[2]
    assert list(read_transcripts_csv(out / "transcripts.csv")) == names[2:4]
    assert "2 skipped" in capsys.readouterr().out
    with pytest.raises(BadAudioError, match=corrupt):
        main(cli_args(corpus, tmp_path / "strict", "--max_turns", "4", "--strict"))
