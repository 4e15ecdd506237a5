"""No command destroys its inputs, and no package hides a swapped model (real commands only).

Each test runs the command a user would run and checks the one error line, the exit code, and
that every file that was there before is still there, byte for byte.
"""

import hashlib
import json
import re
import shutil
import sys

import pytest

from tests.cli_helpers import assert_one_line_error, cli
from tests.conftest import ROOT, run, train_command


def snapshot(folder):
    """``{relative path: sha256}`` of every file under ``folder``."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def export(*args):
    return cli([sys.executable, "-m", "ser.export", *args], timeout=600)


def predict_with(package, audio, out):
    command = [sys.executable, "-m", "ser.predict", audio, "--model", package, "--out", out, "--no_progress"]
    return cli(command, timeout=600)


# ---- ser.export never deletes what it reads; --overwrite replaces only a package ----


@pytest.fixture()
def training(demo_package, tmp_path):
    """A private copy of the demo package's training folders (systems A and B, and their parent)."""
    copy = tmp_path / "training"
    for system in ("a", "b"):
        shutil.copytree(demo_package[1] / f"system_{system}", copy / f"system_{system}")
    return copy


def test_export_onto_its_own_run_folder_is_refused(training):
    run_dir = training / "system_a" / "1993"
    before = snapshot(training)
    done = export(run_dir, "--out", run_dir, "--overwrite")
    assert done.returncode == 2
    assert_one_line_error(done, f"--out {run_dir}", "is the input", "choose an --out apart from the inputs")
    assert snapshot(training) == before


def test_export_onto_the_runs_parent_is_refused(training):
    before = snapshot(training)
    done = export(training / "system_a" / "1993", training / "system_b" / "1993", "--out", training,
                  "--overwrite")
    assert done.returncode == 2
    assert_one_line_error(done, f"--out {training}", "contains the input")
    assert snapshot(training) == before


def test_export_inside_a_run_folder_is_refused(training):
    run_dir = training / "system_a" / "1993"
    done = export(run_dir, "--out", run_dir / "package")
    assert done.returncode == 2
    assert_one_line_error(done, "lies inside the input")
    assert not (run_dir / "package").exists()


def test_export_under_a_file_names_it_before_any_work(training, tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    done = export(training / "system_a" / "1993", "--out", a_file / "package")
    assert done.returncode == 1  # an output that cannot be written (ser/cli.py)
    assert_one_line_error(done, f"{a_file}: is a file, not a folder")
    assert a_file.read_text() == "not a folder"


def test_overwrite_replaces_only_a_package(training, tmp_path):
    mine = tmp_path / "my_files"
    mine.mkdir()
    (mine / "thesis.tex").write_text("four years of work")
    done = export(training / "system_a" / "1993", "--out", mine, "--overwrite")
    assert done.returncode == 2
    assert_one_line_error(done, f"--out {mine}", "not a package written by ser.export")
    assert (mine / "thesis.tex").read_text() == "four years of work"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left

    package = tmp_path / "package"
    assert export(training / "system_a" / "1993", "--out", package).returncode == 0
    done = export(training / "system_a" / "1993", "--out", package)
    assert done.returncode == 2
    assert_one_line_error(done, f"{package}: already exists", "--overwrite")
    done = export(training / "system_a" / "1993", "--out", package, "--overwrite")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (package / "ser_package.json").is_file()


# ---- a package checks what folders check ----


@pytest.fixture(scope="module")
def other_run_package(mini_corpus, tiny_models, tmp_path_factory):
    """System A trained again (another seed), exported alone: the same system, another run."""
    results = tmp_path_factory.mktemp("other_run")
    run(train_command("a", mini_corpus, results, tiny_models, "--debug", "--debug_persistently", "--seed=7"))
    package = results / "package"
    run([sys.executable, "-m", "ser.export", str(results / "system_a" / "7"), "--out", str(package)])
    return package


def _package_copy(demo_package, tmp_path):
    package = tmp_path / "package"
    shutil.copytree(demo_package[0], package)
    return package


def test_a_swapped_system_in_a_package_is_refused(demo_package, other_run_package, mini_corpus, tmp_path):
    package = _package_copy(demo_package, tmp_path)
    shutil.rmtree(package / "systems" / "system_a")
    shutil.copytree(other_run_package / "systems" / "system_a", package / "systems" / "system_a")
    done = predict_with(package, mini_corpus / "Audios", tmp_path / "out.csv")
    assert done.returncode == 2
    assert_one_line_error(done, str(package / "systems" / "system_a"), "fingerprint differs")
    assert not (tmp_path / "out.csv").exists()

    # Even with the manifest's fingerprints rewritten to fit, the fusion's record of who it fused
    # (fusion_model.json, as for folders) refuses the other run.
    from ser.inference.package import MANIFEST, fingerprint_package_files

    manifest = json.loads((package / MANIFEST).read_text())
    manifest["files"] = fingerprint_package_files(package)
    (package / MANIFEST).write_text(json.dumps(manifest))
    done = predict_with(package, mini_corpus / "Audios", tmp_path / "out.csv")
    assert done.returncode == 2
    assert_one_line_error(done, "is another run of system_a", "fuse again")


@pytest.mark.parametrize("missing", ["systems/system_a/system.json", "fusion/fusion_model.json"])
def test_a_package_without_its_identities_does_not_load(demo_package, mini_corpus, tmp_path, missing):
    package = _package_copy(demo_package, tmp_path)
    (package / missing).unlink()
    done = predict_with(package, mini_corpus / "Audios", tmp_path / "out.csv")
    assert done.returncode == 2
    assert_one_line_error(done, str(package / missing), "missing from the package")


def test_copied_systems_and_fusion_export_as_they_predict(demo_package, mini_corpus, tmp_path):
    """A copied system + fusion pair: ser.predict and ser.export both take it, or both refuse it.

    The copies (``cp -r``) keep the training paths in their YAML; both commands match them to the
    fusion by identity, take a system's parent holding one seed folder, and refuse a text system
    whose Whisper model is gone, naming it.
    """
    _, training = demo_package
    wav = sorted((mini_corpus / "Audios").glob("*.wav"))[0]
    letters = [s for s in "abcde" if (training / f"system_{s}").is_dir()]
    flat = tmp_path / "flat"  # renamed: nothing left of the training layout
    for letter in letters:
        shutil.copytree(training / f"system_{letter}" / "1993", flat / letter)
    shutil.copytree(training / "fusion", flat / "fused")
    nested = tmp_path / "nested"
    shutil.copytree(training, nested)

    def both(folders, fusion):
        predicted = cli([sys.executable, "-m", "ser.predict", wav, "--systems", *folders, "--fusion", fusion,
                         "--out", tmp_path / "preds.csv", "--no_progress"], timeout=600)
        exported = export(*folders, "--fusion", fusion, "--out", tmp_path / "pkg", "--overwrite")
        return predicted, exported

    for folders, fusion in (([flat / s for s in letters], flat / "fused"),
                            ([nested / f"system_{s}" for s in letters], nested / "fusion")):
        for done in both(folders, fusion):
            assert done.returncode == 0, done.stderr[-3000:]

    hparams = flat / "d" / "hyperparams.yaml"  # system D reads Whisper transcripts
    gone = tmp_path / "whisper_gone"
    hparams.write_text(re.sub(r"(?m)^whisper_model:.*(\n\s+\S.*)?$", f"whisper_model: {gone}",
                              hparams.read_text()))
    for done in both([flat / s for s in letters], flat / "fused"):
        assert done.returncode == 2, done.stderr[-3000:]
        assert_one_line_error(done, str(gone))


# ---- train.py: a finished run keeps its settings; one writer per folder ----


def test_a_trained_run_is_not_resumed_with_other_settings(debug_results, mini_corpus, tiny_models, tmp_path):
    shutil.copytree(debug_results / "system_a", tmp_path / "system_a")
    before = snapshot(tmp_path)
    done = cli(train_command("a", mini_corpus, tmp_path, tiny_models, "--debug", "--debug_persistently",
                             "--lr_head=0.05", "--num_workers=1"), timeout=600)
    assert done.returncode == 2
    assert_one_line_error(done, str(tmp_path / "system_a" / "1993" / "hyperparams.yaml"),
                          "lr_head: 0.001 there, 0.05 now", "another --output_folder")
    assert "num_workers" not in done.stderr.splitlines()[-1]
    assert snapshot(tmp_path) == before


def test_a_second_writer_is_refused_and_a_killed_one_leaves_no_lock(mini_corpus, tiny_models, tmp_path):
    import signal
    import subprocess
    import time

    from tests.cli_helpers import ENV

    command = [str(part) for part in train_command("a", mini_corpus, tmp_path, tiny_models, "--debug")]
    first = subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lock = tmp_path / "system_a" / "1993" / ".train.lock"
    try:
        deadline = time.monotonic() + 300
        while not (lock.is_file() and lock.read_text().strip()) and first.poll() is None:
            assert time.monotonic() < deadline, "the first run never took its lock"
            time.sleep(0.5)
        done = cli(command)
        assert done.returncode == 2
        assert_one_line_error(done, str(lock.parent), f"another train.py (pid {first.pid})")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    from ser.training.run_guard import RunLock

    RunLock(lock.parent).release()  # the killed run's lock went with it


# ---- labels outside the corpus's scale are odd rows ----


def test_attributes_outside_the_scale_are_left_out_and_listed(mini_corpus, tmp_path):
    import csv

    corpus = tmp_path / "corpus"
    shutil.copytree(mini_corpus, corpus)
    path = corpus / "Labels" / "labels_consensus.csv"
    rows = list(csv.reader(path.open()))
    header = rows[0]
    # Labelled training turns (X and O turns are left out of Task 1 manifests anyway).
    usable = [i for i, row in enumerate(rows) if i and row[1] in "ACDFHNSU" and row[-1] == "Train"]
    bad = dict(zip(usable[:3], [("EmoAct", "9.5"), ("EmoVal", "-3"), ("EmoDom", "700")], strict=True))
    for index, (column, value) in bad.items():
        rows[index][header.index(column)] = value
    with path.open("w") as stream:
        csv.writer(stream, lineterminator="\n").writerows(rows)
    prepare = [sys.executable, "-m", "data_prep.msp_prepare", "--data_folder", corpus,
               "--transcripts", "none"]
    done = cli([*prepare, "--save_folder", tmp_path / "prep"])
    assert done.returncode == 0, done.stderr[-3000:]
    skipped = (tmp_path / "prep" / "skipped.csv").read_text()
    for index, (column, value) in bad.items():
        assert f"{rows[index][0]},{rows[index][-1]},{column} {value} outside the 1-7 scale" in skipped
    manifests = "".join((tmp_path / "prep" / f"{split}.json").read_text() for split in ("train", "valid"))
    assert not any(rows[index][0].removesuffix(".wav") in manifests for index in bad)

    done = cli([*prepare, "--save_folder", tmp_path / "strict", "--strict"])
    assert done.returncode == 2
    assert_one_line_error(done, str(path), rows[usable[0]][0], "EmoAct 9.5 outside the 1-7 scale")


# ---- one bad file is one error row; the others are classified ----


def _unknown_length_flac(source, target):
    """A FLAC copy of ``source`` whose header's total-samples field is 0 (length unknown)."""
    import soundfile

    data, rate = soundfile.read(source)
    soundfile.write(target, data, rate, format="FLAC")
    raw = bytearray(target.read_bytes())
    raw[8 + 13] &= 0xF0  # STREAMINFO: the 36-bit total sample count starts in the low nibble
    raw[8 + 14 : 8 + 18] = bytes(4)
    target.write_bytes(bytes(raw))


def test_fifo_and_unmeasurable_files_are_error_rows(debug_results, mini_corpus, tmp_path):
    import os

    import pandas as pd

    good = sorted((mini_corpus / "Audios").glob("*.wav"))[0]
    fifo = tmp_path / "fifo.wav"
    os.mkfifo(fifo)
    flac = tmp_path / "unknown.flac"
    _unknown_length_flac(good, flac)
    out = tmp_path / "out.csv"
    done = cli([sys.executable, "-m", "ser.predict", good, fifo, flac, "--systems",
                debug_results / "system_a" / "1993", "--out", out, "--no_progress"], timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    table = pd.read_csv(out).set_index("File")
    assert pd.isna(table.loc[str(good), "Error"])
    assert table.loc[str(fifo), "Error"].endswith("not a regular file")
    assert "header gives no usable length" in table.loc[str(flac), "Error"]


def test_preparation_leaves_out_a_file_of_unknown_length(mini_corpus, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(mini_corpus, corpus)
    labels = (corpus / "Labels" / "labels_consensus.csv").read_text().splitlines()
    name = next(line.split(",")[0] for line in labels[1:] if line.split(",")[1] in "ACDFHNSU"
                and line.endswith(",Train"))
    victim = corpus / "Audios" / name
    _unknown_length_flac(victim, tmp_path / "x.flac")
    shutil.copyfile(tmp_path / "x.flac", victim)
    done = cli([sys.executable, "-m", "data_prep.msp_prepare", "--data_folder", corpus, "--save_folder",
                tmp_path / "prep", "--transcripts", "none"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{victim.name}," in (tmp_path / "prep" / "skipped.csv").read_text()
    assert "header gives no usable length" in (tmp_path / "prep" / "skipped.csv").read_text()


def test_a_stereo_array_is_not_a_batch_of_tiny_clips(demo_package, mini_corpus):
    import numpy as np
    import soundfile

    from ser.inference.recognizer import EmotionRecognizer
    from ser.io.audio import AudioError

    mono, rate = soundfile.read(sorted((mini_corpus / "Audios").glob("*.wav"))[0], dtype="float32")
    stereo = np.stack([mono, mono], axis=1)  # (samples, 2), as soundfile.read returns a stereo file
    recognizer = EmotionRecognizer.from_pretrained(demo_package[0])
    with pytest.raises(AudioError, match=r"pass it in a list: \[clip\]"):
        recognizer.classify_batch(stereo, sample_rate=rate)
    (one,) = recognizer.classify_batch([stereo], sample_rate=rate)
    (alone,) = recognizer.classify_batch([mono], sample_rate=rate)
    assert one.label == alone.label
    with pytest.raises(AudioError, match="transpose a"):
        recognizer.classify_batch([stereo.T], sample_rate=rate)
    # An array does not say its rate: none is guessed.
    with pytest.raises(AudioError, match="give sample_rate="):
        recognizer.classify_batch([mono])
    with pytest.raises(AudioError, match="give sample_rate="):
        recognizer.classify_timeline(mono)


def test_the_page_says_a_flac_without_a_length_has_none(mini_corpus, tmp_path):
    """An upload whose header declares no length is refused as such, not as "10^14 s" over the limit."""
    from ser.inference.app import Limits, _waveform
    from ser.io.audio import AudioError

    flac = tmp_path / "unknown.flac"
    _unknown_length_flac(sorted((mini_corpus / "Audios").glob("*.wav"))[0], flac)
    with pytest.raises(AudioError, match=r"^unknown\.flac: its header gives no usable length") as caught:
        _waveform(str(flac), None, Limits())
    assert " s, over the" not in str(caught.value)
