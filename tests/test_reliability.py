"""The five defects of issue 11, each through the real command, and audio that cannot carry an answer.

1. stale derived files: editing ``labels_detailed.csv`` redoes system E's relabeling and manifests;
2. an untrained model is never reported as results (no checkpoint: an error, nothing written);
3. a fusion accepts exactly the systems it was trained on (identity, not folder names);
4. ``ser.predict --out <folder>``: refused before any work (also a row of test_bad_input_table.py);
5. a preparation always finishes: a symlink loop, a folder named ``*.wav`` and a WAV cut short are
   skipped turns with their reason, and the next run finds the preparation done.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import soundfile

from data_prep.consensus import relabel_corpus
from data_prep.corpora import open_corpus
from ser.emotions import EMOTIONS
from tests.cli_helpers import ENV, assert_one_line_error, cli, python_module
from tests.conftest import PROFILE, ROOT, train_command

RATE = 16000


def _turns_of(corpus, split):
    labels = open_corpus(corpus).turns()
    return labels[(labels["Split_Set"] == split) & labels["EmoClass"].isin(EMOTIONS)]["FileName"].tolist()


# ---- defect 1: stale derived files -----------------------------------------------------------


@pytest.mark.slow
def test_edited_detailed_labels_redo_the_relabeling_and_the_manifests(
    mini_corpus, tiny_models, debug_results, tmp_path
):
    corpus = tmp_path / "corpus"
    shutil.copytree(mini_corpus, corpus)
    results = tmp_path / "results"
    # The corpus copy has the same audio: reuse the session's Whisper cache (no transcription here).
    shutil.copytree(debug_results / "whisper", results / "whisper")
    command = train_command("e", corpus, results, tiny_models, "--debug")
    first = cli(command, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    manifests = results / "system_e" / "1993" / "manifests"
    (relabeled_csv,) = manifests.glob("relabeled_K*.csv")
    before = relabeled_csv.read_text()
    train_before = json.loads((manifests / "train.json").read_text())

    # Every annotator of the X turns now agrees on S: relabeling adds them all, as S.
    detailed_path = corpus / "Labels" / "labels_detailed.csv"
    detailed = pd.read_csv(detailed_path, dtype=str, keep_default_na=False)
    consensus = open_corpus(corpus).turns()
    x_turns = set(consensus.loc[consensus["EmoClass"] == "X", "FileName"])
    chosen = detailed["FileName"].isin(x_turns)
    detailed.loc[chosen, "EmoDetail"] = detailed.loc[chosen, "EmoDetail"].str.replace(
        r"^([^;]*;\s*)[^;]*", r"\1Sad", regex=True
    )
    detailed.to_csv(detailed_path, index=False)
    again = cli(command, timeout=900)

    assert again.returncode == 0, again.stderr[-3000:]
    after = relabeled_csv.read_text()
    assert after != before
    expected, _ = relabel_corpus(open_corpus(corpus), threshold=0.5)
    assert after == expected.to_csv(index=False)
    train_after = json.loads((manifests / "train.json").read_text())
    added = {key for key, entry in train_after.items() if entry["relabeled"]}
    assert added != {key for key, entry in train_before.items() if entry["relabeled"]}
    assert all(train_after[key]["emotion"] == "S" for key in added if key + ".wav" in x_turns)
    # Unchanged inputs: the third run reuses both.
    third = cli(command, timeout=900)
    assert third.returncode == 0
    log = third.stdout + third.stderr
    assert "is up to date with its labels and options" in log
    assert "Preparation already done with the same options" in log


# ---- defect 2: an untrained model is not a result ---------------------------------------------


def test_evaluation_without_a_checkpoint_is_an_error(mini_corpus, tiny_models, tmp_path):
    """A YAML (not an override: those are range-checked) asking for 0 epochs writes no results."""
    system = tmp_path / "system_a.yaml"
    text = (ROOT / "hparams" / "system_a.yaml").read_text()
    system.write_text(re.sub(r"^number_of_epochs: \d+", "number_of_epochs: 0", text, flags=re.MULTILINE))
    profile = tmp_path / "demo.yaml"
    profile.write_text(
        "\n".join(
            line for line in PROFILE.read_text().splitlines() if not line.startswith("number_of_epochs")
        )
    )
    results = tmp_path / "results"
    command = [
        sys.executable,
        ROOT / "train.py",
        system,
        "--profile",
        profile,
        f"--data_folder={mini_corpus}",
        f"--results_folder={results}",
        f"--tiny_models_folder={tiny_models}",
    ]

    done = cli(command)

    assert done.returncode == 2, done.stderr[-3000:]
    assert_one_line_error(done, "train.py: error:", "no checkpoint to evaluate", "untrained")
    output = results / "system_a" / "1993"
    assert not (output / "posteriors").exists() and not (output / "metrics.json").exists()
    assert not (output / "system.json").exists()


# ---- defect 3: a fusion accepts exactly its systems --------------------------------------------


@pytest.mark.slow
def test_fusion_accepts_its_systems_anywhere_and_refuses_another_run(
    mini_corpus, tiny_models, debug_results, tmp_path
):
    from fusion.fuse import fuse_systems

    fused = [debug_results / "system_a" / "1993", debug_results / "system_d" / "1993"]
    fusion_dir = tmp_path / "fusion"
    fuse_systems(fused, fusion_dir, folds=2, kernels=("linear",), c_values=(1.0,))
    turns = sorted((mini_corpus / "Audios").glob("*.wav"))[:2]

    # The same systems copied elsewhere (other folder names too) still load.
    copies = [tmp_path / "elsewhere" / "first", tmp_path / "elsewhere" / "second"]
    for source, copy in zip(fused, copies, strict=True):
        shutil.copytree(source, copy)
    moved = cli(
        python_module(
            "ser.predict",
            *turns,
            "--systems",
            *copies,
            "--fusion",
            fusion_dir,
            "--out",
            tmp_path / "moved.csv",
            "--no_progress",
        )
    )
    assert moved.returncode == 0, moved.stderr[-3000:]

    # Another run of A (another seed), in a folder of the same name: refused, naming it.
    other = tmp_path / "other"
    done = cli(
        train_command(
            "a",
            mini_corpus,
            other,
            tiny_models,
            "--debug",
            "--debug_persistently",
            "--seed=7",
            f"--output_folder={other}/system_a/1993",
        )
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "other.csv"
    refused = cli(
        python_module(
            "ser.predict",
            *turns,
            "--systems",
            other / "system_a" / "1993",
            fused[1],
            "--fusion",
            fusion_dir,
            "--out",
            out,
            "--no_progress",
        )
    )
    assert refused.returncode == 2
    assert_one_line_error(
        refused, "ser.predict: error:", str(other / "system_a" / "1993"), "another run of system_a"
    )
    assert not out.exists()
    identity = json.loads((fusion_dir / "fusion_model.json").read_text())["system_identities"]
    assert [i["name"] for i in identity] == ["system_a", "system_d"]


# ---- defect 5: a preparation that always finishes --------------------------------------------


def test_unreadable_paths_and_cut_wavs_are_skipped_turns_and_the_preparation_finishes(mini_corpus, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(mini_corpus, corpus)
    loop, folder, cut = _turns_of(corpus, "Train")[:3]
    audios = corpus / "Audios"
    (audios / loop).unlink()
    os.symlink(audios / loop, audios / loop)  # a symlink to itself: ELOOP
    (audios / folder).unlink()
    (audios / folder).mkdir()
    info = soundfile.info(audios / cut)
    os.truncate(audios / cut, 44 + 2 * (info.frames // 2))  # half its data: header says more
    save = tmp_path / "prep"
    command = python_module(
        "data_prep.msp_prepare", "--data_folder", corpus, "--save_folder", save, "--transcripts", "none"
    )

    first = cli(command)

    assert first.returncode == 0, first.stderr[-3000:]
    skipped = pd.read_csv(save / "skipped.csv", keep_default_na=False).set_index("FileName")["Reason"]
    assert "Too many levels of symbolic links" in skipped[loop]
    assert skipped[folder] == "a folder, not an audio file"
    assert (
        skipped[cut]
        == f"truncated: its header declares {info.frames} samples, the file holds {info.frames // 2}"
    )
    assert (save / "prepare_options.json").is_file()
    second = cli(command)
    assert second.returncode == 0
    assert "Preparation already done with the same options" in second.stdout + second.stderr


# ---- audio that cannot carry an answer -------------------------------------------------------


def test_silent_and_too_short_files_are_flagged(debug_results, mini_corpus, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    speech = sorted((mini_corpus / "Audios").glob("*.wav"))[0]
    shutil.copy(speech, inputs / "speech.wav")
    soundfile.write(inputs / "silence.wav", np.zeros(RATE, np.int16), RATE)
    audio, _ = soundfile.read(speech, dtype="float32")
    soundfile.write(inputs / "blip.wav", audio[RATE : RATE + 100], RATE)
    out = tmp_path / "preds.csv"

    done = cli(
        python_module(
            "ser.predict",
            inputs,
            "--systems",
            debug_results / "system_a" / "1993",
            "--out",
            out,
            "--no_progress",
        )
    )

    assert done.returncode == 0, done.stderr[-3000:]
    table = pd.read_csv(out, keep_default_na=False).set_index("File")
    flags = {os.path.basename(name): flag for name, flag in table["Flag"].items()}
    assert flags == {"blip.wav": "too_short", "silence.wav": "silent", "speech.wav": ""}
    assert table["EmoClass"].isin(EMOTIONS).all()
    assert f"{inputs / 'silence.wav'}: digital silence" in done.stderr
    assert f"{inputs / 'blip.wav'}: under 400 samples" in done.stderr


def test_transcription_skips_what_preparation_skips(mini_corpus, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(mini_corpus, corpus)
    first = sorted(_turns_of(corpus, "Development"))[0]
    audio, _ = soundfile.read(corpus / "Audios" / first, dtype="float32")
    soundfile.write(corpus / "Audios" / first, audio[:300], RATE)
    out = tmp_path / "whisper"

    done = cli(
        python_module(
            "data_prep.transcribe",
            "--data_folder",
            corpus,
            "--out",
            out,
            "--splits",
            "Development",
            "--model",
            "bundled-tiny.en",
            "--max_turns",
            "2",
            "--no_progress",
        )
    )

    assert done.returncode == 0, done.stderr[-3000:]
    skipped = pd.read_csv(out / "skipped.csv", keep_default_na=False)
    assert skipped["FileName"].tolist() == [first]
    assert list(skipped.columns) == ["FileName", "Split", "Reason"]  # as the preparation's (ser.skipped)
    assert skipped["Split"].tolist() == ["Development"]
    assert "too short: 300 samples" in skipped["Reason"].iloc[0]
    assert first not in pd.read_csv(out / "transcripts.csv", keep_default_na=False)["FileName"].tolist()


# ---- Ctrl-C ------------------------------------------------------------------------------------


def test_ctrl_c_says_what_was_kept_and_how_to_resume(mini_corpus, tmp_path):
    out = tmp_path / "whisper"
    command = python_module(
        "data_prep.transcribe",
        "--data_folder",
        mini_corpus,
        "--out",
        out,
        "--model",
        "bundled-tiny.en",
        "--batch_size",
        "1",
        "--no_progress",
    )
    process = subprocess.Popen(
        [str(part) for part in command],
        cwd=ROOT,
        env=ENV,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    lines = []
    for line in process.stderr:  # wait until the work has started (the imports are done)
        lines.append(line)
        if "to transcribe" in line:
            break
    process.send_signal(signal.SIGINT)
    stdout, rest = process.communicate(timeout=120)
    stderr = "".join(lines) + rest

    assert process.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == (
        "data_prep.transcribe: error: interrupted: every finished batch is kept in the cache; "
        "run the same command again to resume there"
    )
