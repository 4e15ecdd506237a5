"""The exported package (ser.export, EmotionRecognizer.from_pretrained, ser.predict --model).

The five debug systems and their fusion are exported (``demo_package`` in conftest.py); the
training folders are then deleted and everything else the training used (tiny models, Whisper
transcripts, the session's results) is moved out of reach while the package predicts.
"""

import json
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile

from ser.emotions import EMOTIONS
from ser.inference.package import MANIFEST, WEIGHTS, PackageError
from ser.inference.recognizer import EmotionRecognizer
from tests.conftest import SYSTEMS, THREADS

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def out_of_reach(*folders):
    """Rename folders away for the duration of the block (restored afterwards)."""
    moved = []
    try:
        for folder in folders:
            hidden = folder.with_name(folder.name + ".hidden")
            folder.rename(hidden)
            moved.append((hidden, folder))
        yield
    finally:
        for hidden, folder in moved:
            hidden.rename(folder)


@pytest.fixture(scope="module")
def clips(mini_corpus, tmp_path_factory):
    """Four dev/test clips of the mini corpus and a 25 s file (several eval windows)."""
    turns = sorted((mini_corpus / "Audios").glob("*.wav"))
    folder = tmp_path_factory.mktemp("package_clips")
    pieces = [soundfile.read(turn, dtype="float32")[0] for turn in turns[:14]]
    soundfile.write(folder / "long_25s.wav", np.concatenate(pieces)[: 25 * 16000], 16000)
    return [*turns[:4], folder / "long_25s.wav"]


def _table(results):
    return np.array([[r.probabilities[c] for c in EMOTIONS] for r in results])


@pytest.mark.slow
def test_package_predicts_what_the_training_folders_predict(demo_package, clips, debug_results, tiny_models,
                                                            tmp_path, capsys):
    package, training = demo_package
    folders = [training / f"system_{s}" / "1993" for s in SYSTEMS]
    reference = EmotionRecognizer.from_folders(folders, training / "fusion").classify_files(clips)
    assert all(r.error is None for r in reference)

    moved = tmp_path / "elsewhere" / "my_model"  # another place, as on another machine
    shutil.copytree(package, moved)
    # The folders it was exported from are out of reach too (moved back after: other tests use them).
    with out_of_reach(debug_results, tiny_models, training):
        recognizer = EmotionRecognizer.from_pretrained(moved)
        from_package = recognizer.classify_files(clips)
        out = tmp_path / "preds.csv"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": THREADS}
        done = subprocess.run([sys.executable, "-m", "ser.predict", *map(str, clips), "--model", str(moved),
                               "--out", str(out), "--no_progress"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [r.label for r in from_package] == [r.label for r in reference]
    np.testing.assert_allclose(_table(from_package), _table(reference), atol=1e-6, rtol=0)
    for ours, theirs in zip(from_package, reference, strict=True):
        for system in theirs.system_probabilities:
            np.testing.assert_allclose(list(ours.system_probabilities[system].values()),
                                       list(theirs.system_probabilities[system].values()), atol=1e-6, rtol=0)
        assert ours.transcript == theirs.transcript
    written = pd.read_csv(out, keep_default_na=False).set_index("File")
    for clip, result in zip(clips, reference, strict=True):
        assert written.loc[str(clip), "EmoClass"] == result.label
        np.testing.assert_allclose(written.loc[str(clip), list(EMOTIONS)].astype(float),
                                   _table([result])[0], atol=1e-6)
    size = sum(p.stat().st_size for p in package.rglob("*") if p.is_file())
    with capsys.disabled():
        print(f"\npackage of the five debug systems + fusion: {size / 1e6:.1f} MB "
              f"({sum(1 for p in package.rglob('*') if p.is_file())} files)")


def test_package_holds_weights_only_and_no_local_path(demo_package, debug_results, tiny_models, mini_corpus):
    package, training = demo_package
    manifest = json.loads((package / MANIFEST).read_text())
    assert [s["label"] for s in manifest["systems"]] == [f"Sub-System {s}" for s in "ABCDE"]
    assert manifest["fusion"] == "fusion" and (package / "README.md").read_text().startswith("---\n")
    from safetensors import safe_open

    for entry in manifest["systems"]:
        folder = package / entry["folder"]
        with safe_open(folder / WEIGHTS, "pt") as weights:
            keys = list(weights.keys())
        assert keys and all(not k.startswith(("optimizer", "state", "param_groups")) for k in keys)
        names = {p.name for p in folder.rglob("*")}
        assert not names & {"optimizer.ckpt", "counter.ckpt", "brain.ckpt", "random_state.ckpt"}, names
        assert not any(p.suffix in (".ckpt", ".bin", ".pt") for p in folder.rglob("*"))
        # Encoder folders hold configurations; the only weights are model.safetensors.
        assert [p.name for p in folder.rglob("*.safetensors")] == [WEIGHTS]
    whisper = [json.loads((package / e["folder"] / "transcriber.json").read_text())
               for e in manifest["systems"] if e["uses_text"]]
    assert len(whisper) == 2 and all(w["packaged"] and (package / w["model"]).is_dir() for w in whisper)
    roots = [str(p.resolve()) for p in (training.parent, debug_results, tiny_models, mini_corpus)]
    roots.append(str(Path.home()))
    for path in package.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for root in roots:
                assert root.encode() not in data, f"{path.relative_to(package)} names {root}"


def test_in_memory_waveforms_and_timeline(demo_package, clips):
    recognizer = EmotionRecognizer.from_pretrained(demo_package[0])
    by_file = recognizer.classify_files(clips[:2])
    audio = [soundfile.read(clip, dtype="float32") for clip in clips[:2]]
    in_memory = recognizer.classify_batch([a for a, _ in audio], sample_rate=16000)
    np.testing.assert_allclose(_table(in_memory), _table(by_file), atol=1e-6)
    one = recognizer.classify_batch(audio[0][0], sample_rate=16000)
    assert len(one) == 1 and one[0].label == by_file[0].label
    # A padded batch with SpeechBrain's relative lengths gives the same answers.
    longest = max(len(a) for a, _ in audio)
    padded = np.stack([np.pad(a, (0, longest - len(a))) for a, _ in audio])
    lens = [len(a) / longest for a, _ in audio]
    np.testing.assert_allclose(_table(recognizer.classify_batch(padded, 16000, wav_lens=lens)),
                               _table(by_file), atol=1e-5)
    rows = recognizer.classify_timeline(clips[-1], window=4.0, hop=2.0)
    assert rows[0].start == 0 and rows[-1].end == pytest.approx(25.0)
    assert all(b.start - a.start == pytest.approx(2.0) for a, b in zip(rows[:-2], rows[1:-1], strict=True))
    assert all(abs(sum(r.probabilities.values()) - 1) < 1e-6 and r.label in EMOTIONS for r in rows)


def test_not_a_package_is_a_clear_error(tmp_path):
    from ser.io.model_source import ModelNotAvailableError

    with pytest.raises(ModelNotAvailableError, match="has no ser_package.json"):
        EmotionRecognizer.from_pretrained(tmp_path)
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(PackageError, match="unreadable package manifest"):
        EmotionRecognizer.from_pretrained(tmp_path)
    with pytest.raises(ModelNotAvailableError, match="must be cached or given as a local folder"):
        EmotionRecognizer.from_pretrained("someone/ser-model-that-is-not-cached")


def test_predict_cli_timeline_and_embeddings(demo_package, clips, tmp_path):
    out = tmp_path / "preds.csv"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": THREADS}
    done = subprocess.run([sys.executable, "-m", "ser.predict", str(clips[0]), str(clips[-1]), "--model",
                           str(demo_package[0]), "--out", str(out), "--timeline", "--window", "5", "--hop",
                           "2.5", "--embeddings", str(tmp_path / "vectors"), "--no_progress"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    timeline = pd.read_csv(tmp_path / "preds_timeline.csv")
    assert list(timeline.columns) == ["File", "Start", "End", "EmoClass", *EMOTIONS]
    long_rows = timeline[timeline["File"] == str(clips[-1])]
    assert len(long_rows) == 9 and long_rows["End"].max() == pytest.approx(25.0)  # 0, 2.5, ..., 20
    pngs = sorted((tmp_path / "preds_timeline").glob("*.png"))
    assert len(pngs) == 2 and all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)
    index = pd.read_csv(tmp_path / "vectors" / "index.csv")
    assert len(index) == 2 * len(SYSTEMS) and set(index["System"]) == {f"system_{s}" for s in SYSTEMS}
    for row in index.itertuples():
        vectors = np.load(tmp_path / "vectors" / row.Embedding)
        assert vectors.shape == (row.Windows, row.Dim) and np.isfinite(vectors).all()
    # The long file spans 3 of the demo profile's 10 s evaluation windows.
    assert set(index[index["File"] == str(clips[-1])]["Windows"]) == {3}


BLOCKED = '''
import importlib.abc, sys

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("data_prep", "fusion", "recipes"):
            raise ImportError(f"the library imported {name}")

sys.meta_path.insert(0, Blocker())
from ser.inference.recognizer import EmotionRecognizer
result = EmotionRecognizer.from_pretrained(sys.argv[1]).classify_file(sys.argv[2])
print(result.label, result.transcript is not None)
'''


@pytest.mark.slow
def test_package_loads_with_the_upper_packages_blocked(demo_package, clips):
    """The library alone (no data_prep, fusion, recipes) loads the package, its Whisper and fusion."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": THREADS}
    done = subprocess.run([sys.executable, "-c", BLOCKED, str(demo_package[0]), str(clips[0])], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    label, has_transcript = done.stdout.split()[-2:]
    assert label in EMOTIONS and has_transcript == "True"
