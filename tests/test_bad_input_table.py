"""Every command against a table of bad inputs (issue 11): one line, a documented exit code.

Each row runs a real command in a subprocess (``train.py``, ``python -m data_prep.*``,
``fusion.fuse``, ``fusion.report``, ``ser.predict``, ``ser.export``, ``recipes.demo``) and
checks, through the one edge they share (:mod:`ser.cli`): the exit code (2 bad input, 1 a file
that cannot be written), that one stderr line ``<command>: error: ...`` names the path or key,
that no traceback is printed, and that every file that existed before (earlier outputs, the
inputs) is byte-identical afterwards.

A row is ``(command, case, arguments, exit code, fragments)``; arguments and fragments may name
``{corpus}``, ``{models}``, ``{tmp}``, ``{system}`` (a trained system A), ``{systems}`` (two
fusable system folders), ``{fusion}`` (a fusion folder) and ``{file}`` (an existing plain file),
filled in per test.
"""

import shutil
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

from tests.cli_helpers import assert_one_line_error, cli, fake_systems
from tests.conftest import PROFILE, ROOT

NO_GPU = not torch.cuda.is_available()
TRAIN = [
    str(ROOT / "train.py"),
    str(ROOT / "hparams" / "system_a.yaml"),
    "--profile",
    str(PROFILE),
    "--data_folder={corpus}",
    "--results_folder={tmp}/results",
    "--tiny_models_folder={models}",
    "--debug",
]
PREDICT = ["-m", "ser.predict", "{corpus}/Audios", "--systems", "{system}", "--no_progress"]
#: ser.export to a fresh package folder; the systems follow.
EXPORT = ["-m", "ser.export", "--out", "{tmp}/pkg"]

CASES = [
    # ---- train.py: overrides checked for range as well as type, before anything is built ----
    (
        "train.py",
        "zero epochs",
        [*TRAIN, "--number_of_epochs=0"],
        2,
        ["--number_of_epochs=0", "must be at least 1", "system_a.yaml"],
    ),
    (
        "train.py",
        "negative epochs",
        [*TRAIN, "--number_of_epochs=-1"],
        2,
        ["--number_of_epochs=-1", "at least 1"],
    ),
    ("train.py", "zero batch size", [*TRAIN, "--batch_size=0"], 2, ["--batch_size=0", "at least 1"]),
    ("train.py", "zero learning rate", [*TRAIN, "--lr_head=0"], 2, ["--lr_head=0", "above 0"]),
    ("train.py", "zero max_duration", [*TRAIN, "--max_duration=0"], 2, ["--max_duration=0", "above 0"]),
    ("train.py", "infinite max_duration", [*TRAIN, "--max_duration=.inf"], 2,
     ["max_duration must be a finite number above 0"]),
    (
        "train.py",
        "negative eval duration",
        [*TRAIN, "--eval_max_duration=-5"],
        2,
        ["--eval_max_duration", "above 0"],
    ),
    ("train.py", "negative workers", [*TRAIN, "--num_workers=-1"], 2, ["--num_workers=-1", "0 or more"]),
    (
        "train.py",
        "threshold above 1",
        [*TRAIN, "--newbob_threshold=1.5"],
        2,
        ["--newbob_threshold=1.5", "between 0 and 1"],
    ),
    ("train.py", "wrong type", [*TRAIN, "--batch_size=abc"], 2, ["--batch_size=abc", "an integer"]),
    ("train.py", "unknown key", [*TRAIN, "--batch_szie=8"], 2, ["--batch_szie", "did you mean batch_size?"]),
    ("train.py", "--profile without a path", [*TRAIN, "--profile"], 2, ["--profile needs a path"]),
    ("train.py", "cuda without a GPU", [*TRAIN, "--device=cuda"], 2, ["--device cuda", "no CUDA GPU"]),
    (
        "train.py",
        "missing corpus",
        [*TRAIN, "--data_folder={tmp}/no_corpus"],
        2,
        ["{tmp}/no_corpus", "data folder not found"],
    ),
    ("train.py", "not a corpus", [*TRAIN, "--data_folder={tmp}"], 2, ["Audios", "not an MSP-Podcast layout"]),
    ("train.py", "output folder is a file", [*TRAIN, "--output_folder={file}"], 1, ["{file}"]),
    # Loss settings: checked when the YAML is loaded, before preparation writes anything.
    (
        "train.py",
        "class weights of another count",
        [*TRAIN, "--class_weights=[1,2]"],
        2,
        ["class_weights: 2 weights for 8 classes", "one per class"],
    ),
    ("train.py", "class weights not numbers", [*TRAIN, "--class_weights=foo"], 2,
     ["class_weights must be a list of numbers", "'foo'"]),
    ("train.py", "negative class weight", [*TRAIN, "--class_weights=[-1,1,1,1,1,1,1,1]"], 2,
     ["class_weights must be finite and >= 0"]),
    ("train.py", "unknown loss", [*TRAIN, "--loss=hinge"], 2,
     ["loss must be nll, focal or jeffreys", "'hinge'"]),
    # ---- data_prep.msp_prepare ----
    (
        "data_prep.msp_prepare",
        "missing corpus",
        ["-m", "data_prep.msp_prepare", "--data_folder", "{tmp}/none", "--save_folder", "{tmp}/prep"],
        2,
        ["{tmp}/none", "data folder not found"],
    ),
    (
        "data_prep.msp_prepare",
        "save folder is a file",
        [
            "-m",
            "data_prep.msp_prepare",
            "--data_folder",
            "{corpus}",
            "--save_folder",
            "{file}",
            "--transcripts",
            "none",
        ],
        1,
        ["{file}", "is a file, not a folder"],
    ),
    (
        "data_prep.msp_prepare",
        "save folder inside the corpus",
        ["-m", "data_prep.msp_prepare", "--data_folder", "{corpus}", "--save_folder", "{corpus}/prep"],
        2,
        ["{corpus}/prep", "inside the corpus"],
    ),
    (
        "data_prep.msp_prepare",
        "malformed --split",
        [
            "-m",
            "data_prep.msp_prepare",
            "--data_folder",
            "{corpus}",
            "--save_folder",
            "{tmp}/p",
            "--split",
            "dev",
        ],
        2,
        ["--split takes NAME=Split_Set", "'dev'"],
    ),
    (
        "data_prep.msp_prepare",
        "unknown split",
        [
            "-m",
            "data_prep.msp_prepare",
            "--data_folder",
            "{corpus}",
            "--save_folder",
            "{tmp}/p",
            "--split",
            "valid=Test9",
        ],
        2,
        ["unknown Split_Set 'Test9'"],
    ),
    (
        "data_prep.msp_prepare",
        "missing relabeled csv",
        [
            "-m",
            "data_prep.msp_prepare",
            "--data_folder",
            "{corpus}",
            "--save_folder",
            "{tmp}/p",
            "--transcripts",
            "none",
            "--relabeled_csv",
            "{tmp}/none.csv",
        ],
        2,
        ["{tmp}/none.csv", "not found"],
    ),
    (
        "data_prep.msp_prepare",
        "missing transcripts csv",
        [
            "-m",
            "data_prep.msp_prepare",
            "--data_folder",
            "{corpus}",
            "--save_folder",
            "{tmp}/p",
            "--transcripts",
            "{tmp}/none.csv",
        ],
        2,
        ["{tmp}/none.csv", "transcripts file not found"],
    ),
    # ---- data_prep.consensus ----
    (
        "data_prep.consensus",
        "missing corpus",
        ["-m", "data_prep.consensus", "--data_folder", "{tmp}/none", "--out", "{tmp}/r.csv"],
        2,
        ["{tmp}/none", "data folder not found"],
    ),
    (
        "data_prep.consensus",
        "threshold 1.5",
        [
            "-m",
            "data_prep.consensus",
            "--data_folder",
            "{corpus}",
            "--threshold",
            "1.5",
            "--out",
            "{tmp}/r.csv",
        ],
        2,
        ["--threshold", "between 0 and 1", "1.5"],
    ),
    (
        "data_prep.consensus",
        "threshold not a number",
        [
            "-m",
            "data_prep.consensus",
            "--data_folder",
            "{corpus}",
            "--threshold",
            "half",
            "--out",
            "{tmp}/r.csv",
        ],
        2,
        ["--threshold", "'half'"],
    ),
    (
        "data_prep.consensus",
        "unknown class letter",
        ["-m", "data_prep.consensus", "--data_folder", "{corpus}", "--addable", "AQ", "--out", "{tmp}/r.csv"],
        2,
        ["--addable", "'AQ'"],
    ),
    (
        "data_prep.consensus",
        "output is a folder",
        ["-m", "data_prep.consensus", "--data_folder", "{corpus}", "--out", "{tmp}"],
        2,
        ["--out {tmp}", "is a folder"],
    ),
    # ---- data_prep.transcribe ----
    (
        "data_prep.transcribe",
        "unknown model name",
        ["-m", "data_prep.transcribe", "--data_folder", "{corpus}", "--out", "{tmp}/w",
         "--model", "large-v99"],
        2,
        ["large-v99: not a model name or path for faster-whisper"],
    ),
    (
        "data_prep.transcribe",
        "missing openai-whisper checkpoint",
        ["-m", "data_prep.transcribe", "--data_folder", "{corpus}", "--out", "{tmp}/w", "--backend",
         "openai-whisper", "--model", "{tmp}/none.pt"],
        2,
        ["{tmp}/none.pt: no such file or folder"],
    ),
    (
        "data_prep.transcribe",
        "shard 0/2",
        ["-m", "data_prep.transcribe", "--data_folder", "{corpus}", "--out", "{tmp}/w", "--shard", "0/2"],
        2,
        ["--shard '0/2'", "1 <= i <= n"],
    ),
    (
        "data_prep.transcribe",
        "shard 3/2",
        ["-m", "data_prep.transcribe", "--data_folder", "{corpus}", "--out", "{tmp}/w", "--shard", "3/2"],
        2,
        ["--shard '3/2'"],
    ),
    (
        "data_prep.transcribe",
        "shard not i/n",
        ["-m", "data_prep.transcribe", "--data_folder", "{corpus}", "--out", "{tmp}/w", "--shard", "half"],
        2,
        ["--shard 'half'", "expected i/n"],
    ),
    (
        "data_prep.transcribe",
        "batch size 0",
        ["-m", "data_prep.transcribe", "--data_folder", "{corpus}", "--out", "{tmp}/w", "--batch_size", "0"],
        2,
        ["--batch_size", "at least 1, got 0"],
    ),
    (
        "data_prep.transcribe",
        "window above 30 s",
        [
            "-m",
            "data_prep.transcribe",
            "--data_folder",
            "{corpus}",
            "--out",
            "{tmp}/w",
            "--window_seconds",
            "40",
        ],
        2,
        ["--window_seconds", "at most Whisper's 30 s, got 40"],
    ),
    (
        "data_prep.transcribe",
        "short window with openai-whisper",
        [
            "-m",
            "data_prep.transcribe",
            "--data_folder",
            "{corpus}",
            "--out",
            "{tmp}/w",
            "--backend",
            "openai-whisper",
            "--window_seconds",
            "10",
        ],
        2,
        ["--backend openai-whisper", "window_seconds 10", "use faster-whisper"],
    ),
    (
        "data_prep.transcribe",
        "unknown split",
        ["-m", "data_prep.transcribe", "--data_folder", "{corpus}", "--out", "{tmp}/w", "--splits", "Test9"],
        2,
        ["--splits", "'Test9'"],
    ),
    (
        "data_prep.transcribe",
        "cuda without a GPU",
        ["-m", "data_prep.transcribe", "--data_folder", "{corpus}", "--out", "{tmp}/w", "--device", "cuda"],
        2,
        ["--device cuda", "no CUDA GPU"],
    ),
    (
        "data_prep.transcribe",
        "missing corpus",
        [
            "-m",
            "data_prep.transcribe",
            "--data_folder",
            "{tmp}/none",
            "--out",
            "{tmp}/w",
            "--model",
            "bundled-tiny.en",
        ],
        2,
        ["{tmp}/none"],
    ),
    (
        "data_prep.transcribe",
        "output is a file",
        [
            "-m",
            "data_prep.transcribe",
            "--data_folder",
            "{corpus}",
            "--out",
            "{file}",
            "--model",
            "bundled-tiny.en",
            "--max_turns",
            "1",
        ],
        1,
        ["{file}"],
    ),
    # ---- data_prep.mini_corpus ----
    (
        "data_prep.mini_corpus",
        "zero turns",
        ["-m", "data_prep.mini_corpus", "--out", "{tmp}/m", "--turns", "0"],
        2,
        ["--turns", "needs at least 24"],
    ),
    (
        "data_prep.mini_corpus",
        "negative seed",
        ["-m", "data_prep.mini_corpus", "--out", "{tmp}/m", "--seed", "-1"],
        2,
        ["--seed", "0 or more"],
    ),
    # ---- fusion.fuse ----
    (
        "fusion.fuse",
        "unknown kernel",
        ["-m", "fusion.fuse", "{systems}", "--out", "{tmp}/f", "--kernels", "foo"],
        2,
        ["--kernels", "'foo'"],
    ),
    (
        "fusion.fuse",
        "C of 0",
        ["-m", "fusion.fuse", "{systems}", "--out", "{tmp}/f", "--C", "0"],
        2,
        ["--C", "above 0"],
    ),
    (
        "fusion.fuse",
        "one fold",
        ["-m", "fusion.fuse", "{systems}", "--out", "{tmp}/f", "--folds", "1"],
        2,
        ["--folds", "at least 2 folds"],
    ),
    (
        "fusion.fuse",
        "missing system folder",
        ["-m", "fusion.fuse", "{tmp}/none", "--out", "{tmp}/f"],
        2,
        ["{tmp}/none", "no such system folder"],
    ),
    (
        "fusion.fuse",
        "empty posteriors",
        ["-m", "fusion.fuse", "{systems}", "--out", "{tmp}/f"],
        2,
        ["posteriors/valid.csv", "empty file"],
    ),
    (
        "fusion.fuse",
        "binary posteriors",
        ["-m", "fusion.fuse", "{systems}", "--out", "{tmp}/f"],
        2,
        ["posteriors/valid.csv", "not a"],
    ),
    (
        "fusion.fuse",
        "header-only posteriors",
        ["-m", "fusion.fuse", "{systems}", "--out", "{tmp}/f"],
        2,
        ["posteriors/valid.csv", "header only"],
    ),
    (
        "fusion.fuse",
        "output is a file",
        ["-m", "fusion.fuse", "{systems}", "--out", "{file}"],
        1,
        ["{file}", "is a file, not a folder"],
    ),
    # ---- ser.predict ----
    ("ser.predict", "output is a folder", [*PREDICT, "--out", "{tmp}"], 2, ["--out {tmp}", "is a folder"]),
    ("ser.predict", "--log is a folder", [*PREDICT, "--out", "{tmp}/p.csv", "--log", "{tmp}"], 2,
     ["--log {tmp}: is a folder", "{tmp}/ser_predict.log"]),
    (
        "ser.predict",
        "output folder is a file",
        [*PREDICT, "--out", "{file}/preds.csv"],
        1,
        ["{file}", "is a file, not a folder"],
    ),
    (
        "ser.predict",
        "batch size 0",
        [*PREDICT, "--out", "{tmp}/p.csv", "--batch_size", "0"],
        2,
        ["--batch_size", "at least 1"],
    ),
    (
        "ser.predict",
        "not a system folder",
        ["-m", "ser.predict", "{corpus}/Audios", "--systems", "{tmp}", "--out", "{tmp}/p.csv"],
        2,
        ["--systems {tmp}", "not a system folder"],
    ),
    (
        "ser.predict",
        "cuda without a GPU",
        [*PREDICT, "--out", "{tmp}/p.csv", "--device", "cuda"],
        2,
        ["--device cuda", "no CUDA GPU"],
    ),
    ("ser.predict", "truncated model.ckpt", [*PREDICT, "--out", "{tmp}/p.csv"], 2, ["model.ckpt"]),
    ("ser.predict", "missing model.ckpt", [*PREDICT, "--out", "{tmp}/p.csv"], 2,
     ["{system}/save/CKPT+", "cannot load this checkpoint"]),
    ("ser.predict", "empty CKPT.yaml", [*PREDICT, "--out", "{tmp}/p.csv"], 2,
     ["CKPT.yaml: empty or not a mapping"]),
    ("ser.predict", "malformed CKPT.yaml", [*PREDICT, "--out", "{tmp}/p.csv"], 2, ["CKPT.yaml: unreadable"]),
    (
        "ser.predict",
        "truncated fusion model",
        [*PREDICT, "--out", "{tmp}/p.csv", "--fusion", "{fusion}"],
        2,
        ["{fusion}/fusion_model.joblib", "cannot be loaded"],
    ),
    (
        "ser.predict",
        "fusion folder without a model",
        [*PREDICT, "--out", "{tmp}/p.csv", "--fusion", "{tmp}"],
        2,
        ["{tmp}: no fusion model", "fusion_model.joblib"],
    ),
    # ---- ser.export: every bad input is refused before anything is written to --out ----
    ("ser.export", "missing system folder", [*EXPORT, "{tmp}/none"], 2,
     ["{tmp}/none", "no such system folder"]),
    ("ser.export", "--log is a folder", [*EXPORT, "{system}", "--log", "{tmp}"], 2,
     ["--log {tmp}: is a folder", "{tmp}/ser_export.log"]),
    ("ser.export", "a file as system folder", [*EXPORT, "{file}"], 2,
     ["{file}: is a file, not a system folder"]),
    ("ser.export", "not a system folder", [*EXPORT, "{corpus}/Audios"], 2,
     ["{corpus}/Audios", "not a system folder written by train.py"]),
    ("ser.export", "no checkpoint", [*EXPORT, "{system}"], 2, ["{system}/save: no checkpoint"]),
    ("ser.export", "malformed CKPT.yaml", [*EXPORT, "{system}"], 2, ["CKPT.yaml: unreadable"]),
    ("ser.export", "malformed hyperparams.yaml", [*EXPORT, "{system}"], 2,
     ["{system}/hyperparams.yaml: not valid YAML"]),
    ("ser.export", "corrupt metrics.json", [*EXPORT, "{system}"], 2,
     ["{system}/metrics.json: not valid JSON"]),
    ("ser.export", "truncated fusion model", [*EXPORT, "{system}", "--fusion", "{fusion}"], 2,
     ["{fusion}/fusion_model.joblib", "cannot be loaded"]),
    ("ser.export", "fusion of systems not given", [*EXPORT, "{system}", "--fusion", "{fusion}"], 2,
     ["{fusion}: the fusion was trained on system_a, system_b", "not among the systems given"]),
    ("ser.export", "--out under a file", ["-m", "ser.export", "{system}", "--out", "{file}/pkg"], 1,
     ["{file}: is a file, not a folder"]),
    ("ser.export", "parity option without --onnx",
     [*EXPORT, "{system}", "--parity_audio", "{corpus}/Audios"], 2,
     ["--parity_audio goes with --onnx or --int8"]),
    ("ser.export", "min_agreement 150", [*EXPORT, "{system}", "--onnx", "--min_agreement", "150"], 2,
     ["--min_agreement", "from 0 to 100, got 150"]),
    ("ser.export", "min_agreement -1", [*EXPORT, "{system}", "--onnx", "--min_agreement", "-1"], 2,
     ["--min_agreement", "from 0 to 100, got -1"]),
    ("ser.export", "parity_clips 0", [*EXPORT, "{system}", "--onnx", "--parity_clips", "0"], 2,
     ["--parity_clips", "at least 1, got 0"]),
    ("ser.export", "missing parity audio folder",
     [*EXPORT, "{system}", "--onnx", "--parity_audio", "{tmp}/none"], 2,
     ["{tmp}/none: not a folder of audio files (--parity_audio)"]),
    ("ser.export", "parity audio folder without audio",
     [*EXPORT, "{system}", "--onnx", "--parity_audio", "{corpus}/Labels"], 2,
     ["{corpus}/Labels: no audio file in it (--parity_audio)"]),
    ("ser.export", "parity audio that is not audio",
     [*EXPORT, "{system}", "--onnx", "--parity_audio", "{tmp}/not_audio"], 2,
     ["{tmp}/not_audio/turn.wav: unreadable audio file"]),
    ("ser.export", "malformed parity labels",
     [*EXPORT, "{system}", "--onnx", "--parity_audio", "{corpus}/Audios", "--parity_labels", "{file}"], 2,
     ["{file}: needs columns FileName and EmoClass"]),
    ("ser.export", "parity labels without audio",
     [*EXPORT, "{system}", "--onnx", "--parity_labels", "{corpus}/Labels/labels_consensus.csv"], 2,
     ["--parity_labels", "give --parity_audio too"]),
    # ---- fusion.report ----
    ("fusion.report", "no fusion_metrics.json", ["-m", "fusion.report", "--fusion", "{tmp}"], 2,
     ["{tmp}/fusion_metrics.json: missing"]),
    ("fusion.report", "corrupt fusion_metrics.json", ["-m", "fusion.report", "--fusion", "{fusion}"], 2,
     ["{fusion}/fusion_metrics.json: not valid JSON"]),
    # ---- recipes.demo ----
    (
        "recipes.demo",
        "zero turns",
        ["-m", "recipes.demo", "--results", "{tmp}/demo", "--turns", "0"],
        2,
        ["--turns", "needs at least 24"],
    ),
    (
        "recipes.demo",
        "zero epochs",
        ["-m", "recipes.demo", "--results", "{tmp}/demo", "--epochs", "0"],
        2,
        ["--epochs", "at least 1"],
    ),
    (
        "recipes.demo",
        "unknown system",
        ["-m", "recipes.demo", "--results", "{tmp}/demo", "--systems", "z"],
        2,
        ["--systems", "'z'"],
    ),
]

#: Cases per command (the closing note of issue 11 quotes them).
CASES_PER_COMMAND = Counter(command for command, *_ in CASES)
NEEDS_GPU_ABSENT = {"cuda without a GPU"}
NEEDS_TRAINED_SYSTEM = {"ser.predict", "ser.export"}


def _snapshot(*roots):
    return {p: p.read_bytes() for root in roots for p in Path(root).rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def fusable_systems(tmp_path_factory):
    return fake_systems(tmp_path_factory.mktemp("fusable"))


def _prepare(command, case, tmp, request, fusable_systems):
    """The paths a row names; some rows damage a copy of an input first."""
    plain_file = tmp / "a_file"
    plain_file.write_text("not a folder\n")
    paths = {
        "tmp": tmp,
        "file": plain_file,
        "corpus": request.getfixturevalue("mini_corpus"),
        "models": request.getfixturevalue("tiny_models"),
    }
    systems = [tmp / "systems" / f.parent.name / f.name for f in fusable_systems]
    for source, copy in zip(fusable_systems, systems, strict=True):
        shutil.copytree(source, copy)
    paths["systems"] = systems
    valid = systems[1] / "posteriors" / "valid.csv"
    if case == "empty posteriors":
        valid.write_bytes(b"")
    elif case == "binary posteriors":
        valid.write_bytes(bytes(range(256)) * 8)
    elif case == "header-only posteriors":
        valid.write_text(valid.read_text().splitlines()[0] + "\n")
    if command in NEEDS_TRAINED_SYSTEM:
        results = request.getfixturevalue("debug_results")
        system = tmp / "system_a" / "1993"
        # Inference loads the model alone: the optimizers' states would only fill the disk.
        shutil.copytree(results / "system_a" / "1993", system, ignore=shutil.ignore_patterns("optimizer_*"))
        paths["system"] = system
        if case == "no checkpoint":
            shutil.rmtree(system / "save")
        if case == "malformed hyperparams.yaml":
            (system / "hyperparams.yaml").write_text("model: [unclosed\n")
        if case == "corrupt metrics.json":
            (system / "metrics.json").write_text("{not json")
        if case == "fusion of systems not given":
            from fusion.fuse import fuse_systems

            paths["fusion"] = tmp / "fusion"
            fuse_systems([results / "system_a" / "1993", results / "system_b" / "1993"], paths["fusion"],
                         folds=2)
        if case == "truncated model.ckpt":
            (model_file,) = system.glob("save/CKPT+*/model.ckpt")
            model_file.write_bytes(model_file.read_bytes()[:1000])
        (checkpoint,) = system.glob("save/CKPT+*") if case != "no checkpoint" else (None,)
        if case == "missing model.ckpt":
            (checkpoint / "model.ckpt").unlink()
        if case == "empty CKPT.yaml":
            (checkpoint / "CKPT.yaml").write_text("")
        if case == "malformed CKPT.yaml":
            (checkpoint / "CKPT.yaml").write_text("{{{ not: yaml\n")
        if case == "truncated fusion model":
            fusion = tmp / "fusion"
            fusion.mkdir()
            (fusion / "fusion_model.joblib").write_bytes(b"\x80\x04\x95 cut short")
            paths["fusion"] = fusion
    if case == "parity audio that is not audio":
        (tmp / "not_audio").mkdir()
        (tmp / "not_audio" / "turn.wav").write_text("not audio\n")
    if case == "corrupt fusion_metrics.json":
        paths["fusion"] = tmp / "fusion"
        paths["fusion"].mkdir()
        (paths["fusion"] / "fusion_metrics.json").write_text('{"per_system": ')
    return paths


def _fill(item, paths):
    if item == "{systems}":
        return [str(p) for p in paths["systems"]]
    return [item.format(**{key: value for key, value in paths.items() if key != "systems"})]


@pytest.mark.parametrize(
    ("command", "case", "arguments", "code", "fragments"),
    CASES,
    ids=[f"{command}: {case}" for command, case, *_ in CASES],
)
def test_bad_input_ends_in_one_line(
    command, case, arguments, code, fragments, tmp_path, request, fusable_systems
):
    if case in NEEDS_GPU_ABSENT and not NO_GPU:
        pytest.skip("a CUDA GPU is visible: the 'no GPU' message cannot be provoked")
    paths = _prepare(command, case, tmp_path, request, fusable_systems)
    argv = [part for item in arguments for part in _fill(item, paths)]
    before = _snapshot(tmp_path, paths["corpus"])

    done = cli([sys.executable, *argv], timeout=600)

    assert done.returncode == code, (done.returncode, done.stderr[-3000:])
    expected = [f"{command}: error:", *(part for f in fragments for part in _fill(f, paths))]
    assert_one_line_error(done, *expected)
    error_lines = [line for line in done.stderr.splitlines() if ": error:" in line]
    assert len(error_lines) == 1, error_lines
    after = {p: p.read_bytes() for p in before if p.is_file()}
    assert after == before, "a file that existed before was changed or removed"


def test_every_command_has_rows():
    """The table covers every command the README lists."""
    assert set(CASES_PER_COMMAND) == {
        "train.py",
        "data_prep.msp_prepare",
        "data_prep.consensus",
        "data_prep.transcribe",
        "data_prep.mini_corpus",
        "fusion.fuse",
        "ser.predict",
        "ser.export",
        "fusion.report",
        "recipes.demo",
    }
