"""Bad settings and output folders (issue 5, cases 10-12): overrides, offline models, read-only or full disks.

Read-only folders and full disks are simulated in a private mount namespace (``unshare -rm``):
a read-only bind mount, and a tiny ``tmpfs`` filled to the brim, which gives a true ENOSPC.
"""

import contextlib
import io
import logging
import os
import resource
import shlex
import shutil
import subprocess

import pandas as pd
import pytest
import yaml

from ser.cli import run_command
from ser.training.overrides import merge_overrides
from tests.cli_helpers import assert_one_line_error, cli, fake_systems, fusion_command, python_module
from tests.conftest import ROOT, train_command

# ---- cases 10 and 11: overrides and models at train.py --------------------------------------


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("--batch_size=abc", ["--batch_size=abc", "batch_size to an integer", "got a string"]),
        ("--lr_head=fast", ["--lr_head=fast", "lr_head to a number", "got a string"]),
        (
            "--number_of_epochs=2.5",
            ["--number_of_epochs=2.5", "number_of_epochs to an integer", "got a float"],
        ),
        ("--skip_prep=maybe", ["--skip_prep=maybe", "skip_prep to true or false"]),
        (
            "--batch_szie=8",
            ["--batch_szie: unknown key", "a top-level key batch_szie", "did you mean batch_size?"],
        ),
    ],
)
def test_override_of_wrong_type_or_unknown_key(override, expected, mini_corpus, tiny_models, tmp_path):
    """Case 10: one line naming the key, the YAML file and the expected type; nothing written."""
    done = cli(train_command("a", mini_corpus, tmp_path, tiny_models, "--debug", override))
    assert_one_line_error(done, "train.py: error:", "hparams/system_a.yaml", *expected)
    assert not (tmp_path / "system_a").exists()


def test_float_override_written_like_1e_minus_4_is_a_float():
    """Case 10, the other way round: ``--lr_head=1e-4`` (a string to PyYAML) is the float 0.0001."""
    overrides = merge_overrides(str(ROOT / "hparams" / "system_a.yaml"), None, "lr_head: 1e-4\nseed: 7")
    assert yaml.safe_load(overrides) == {"lr_head": 0.0001, "seed": 7}


def test_model_id_not_available_offline(mini_corpus, tiny_models, tmp_path):
    """Case 11: the id is named and the user told to cache it or give a local folder."""
    command = train_command(
        "a", mini_corpus, tmp_path, tiny_models, "--debug", "--wavlm_hub=nobody/no-such-wavlm"
    )
    done = cli(command)
    assert_one_line_error(
        done, "train.py: error:", "'nobody/no-such-wavlm'", "must be cached or given as a local"
    )


# ---- case 12: read-only or full output folder -----------------------------------------------


def _mount_namespace_works():
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode == 0


MOUNTS = _mount_namespace_works()


def in_mount_namespace(setup, command):
    """``command`` run after shell ``setup`` in a private mount namespace (invisible outside it)."""
    return ["unshare", "-rm", "sh", "-c", f'{setup} && exec "$@"', "sh", *map(str, command)]


def run_with_read_only(folder, command):
    folder.mkdir(parents=True, exist_ok=True)
    if MOUNTS:
        quoted = shlex.quote(str(folder))
        return cli(
            in_mount_namespace(
                f"mount --bind {quoted} {quoted} && mount -o remount,bind,ro {quoted}", command
            )
        )
    if os.geteuid() == 0:
        pytest.skip("no unshare: a read-only folder cannot be simulated as root (chmod does not stop root)")
    folder.chmod(0o555)
    try:
        return cli(command)
    finally:
        folder.chmod(0o755)


def run_with_full_disk(folder, command, size_kib, inputs=()):
    """A ``size_kib`` tmpfs on ``folder``; with ``size_kib`` 4, filled up before ``command`` starts.

    ``inputs`` are files copied onto the tmpfs first (for a command that writes beside what it reads).
    """
    if not MOUNTS:
        pytest.skip("no unshare: cannot mount a small tmpfs to fill up")
    folder.mkdir(parents=True, exist_ok=True)
    quoted = shlex.quote(str(folder))
    setup = f"mount -t tmpfs -o size={size_kib}k tmpfs {quoted}"
    if size_kib == 4:
        setup += f" && (dd if=/dev/zero of={quoted}/filler bs=1k count=8 2>/dev/null || true)"
    for path in inputs:
        setup += f" && cp {shlex.quote(str(path))} {quoted}/"
    return cli(in_mount_namespace(setup, command))


@pytest.fixture(scope="module")
def output_commands(mini_corpus, tiny_models, request, tmp_path_factory):
    """Tool name → (function of the output folder → command, tmpfs size in KiB that fills up in it)."""
    fusion_inputs = fake_systems(tmp_path_factory.mktemp("fusion_inputs"))
    wav = sorted((mini_corpus / "Audios").glob("*.wav"))[0]

    def train(out):
        return train_command("a", mini_corpus, out, tiny_models, "--debug")

    def predict(out):
        system = request.getfixturevalue("debug_results") / "system_a" / "1993"
        return python_module(
            "ser.predict", wav, "--systems", system, "--out", out / "preds.csv", "--no_progress"
        )

    def transcribe(out):
        options = [
            "--splits",
            "Development",
            "--model",
            "bundled-tiny.en",
            "--max_turns",
            "2",
            "--no_progress",
        ]
        return python_module("data_prep.transcribe", "--data_folder", mini_corpus, "--out", out, *options)

    def trained(system):
        return request.getfixturevalue("debug_results") / system / "1993"

    def export(out):
        return python_module("ser.export", trained("system_a"), "--out", out / "package")

    def timeline(out):
        return [*predict(out), "--timeline", "--window", "1", "--hop", "0.5"]

    report_inputs = tmp_path_factory.mktemp("report_inputs")
    assert cli(fusion_command(fusion_inputs, report_inputs)).returncode == 0

    return {
        # 48 KiB: SpeechBrain's own small files fit, the manifests (written by this project) do not.
        "train.py": (train, 48),
        "ser.predict": (predict, 4),
        "fusion.fuse": (lambda out: fusion_command(fusion_inputs, out), 4),
        "data_prep.transcribe": (transcribe, 4),
        # Writes whose library lost the file's name (or raised an error of its own):
        # SpeechBrain's train_log.txt and log.txt (a traceback per log record) ...
        "train.py: logs": (train, 76),
        # ... torch.save's zip writer ("unexpected pos", no OS error) ...
        "train.py: checkpoint": (lambda out: [*train(out), "--debug_persistently"], 1000),
        # ... matplotlib's PNG writer ...
        "ser.predict: timeline figure": (timeline, 8),
        "fusion.fuse: training curves": (
            lambda out: fusion_command([trained("system_a"), trained("system_b")], out), 32),
        # ... soundfile writing a WAV into an open file (an assert fails after its callbacks) ...
        "data_prep.mini_corpus": (lambda out: python_module("data_prep.mini_corpus", "--out", out / "corpus",
                                                            "--turns", "24"), 200),
        # ... a write() of the package's YAML, safetensors' own error, a copy naming its source.
        "ser.export": (export, 4),
        "ser.export: weights": (export, 1000),
        # fusion.report writes beside the fusion_metrics.json it reads (copied in).
        "fusion.report": (lambda out: python_module("fusion.report", "--fusion", out),
                          _pages_kib(report_inputs / "fusion_metrics.json") + 4,
                          [report_inputs / "fusion_metrics.json"]),
    }


def _pages_kib(path):
    """KiB of tmpfs that ``path`` takes (whole 4 KiB pages)."""
    return -(-path.stat().st_size // 4096) * 4


@pytest.mark.parametrize("tool", ["train.py", "ser.predict", "fusion.fuse", "data_prep.transcribe"])
def test_read_only_output_folder(tool, output_commands, tmp_path):
    """Case 12: a read-only output folder is named in one line, before any long work."""
    out = tmp_path / "out"
    command, *_ = output_commands[tool]
    done = run_with_read_only(out, command(out))
    assert_one_line_error(done, out, "read-only file system" if MOUNTS else "ermission denied")


@pytest.mark.parametrize(
    ("tool", "names"),
    [
        ("train.py", "manifests/"),
        ("train.py: logs", ""),
        ("train.py: checkpoint", "/save:"),
        ("ser.predict", ""),
        ("ser.predict: timeline figure", "_timeline/"),
        ("fusion.fuse", ""),
        ("fusion.fuse: training curves", "training_curves/"),
        ("data_prep.transcribe", ""),
        ("data_prep.mini_corpus", "/Audios/"),
        ("ser.export", "package"),
        ("ser.export: weights", "package/systems/system_a/model.safetensors"),
        ("fusion.report", ""),
    ],
)
def test_full_disk_under_the_output_folder(tool, names, output_commands, tmp_path):
    """Case 12: no space left: one line naming the file or folder that could not be written, exit 1."""
    out = tmp_path / "out"
    command, size_kib, *inputs = output_commands[tool]
    done = run_with_full_disk(out, command(out), size_kib, *inputs)
    assert done.returncode == 1, done.stderr[-3000:]
    assert_one_line_error(done, out, names, "no space left on the device")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full to write to")
def test_a_log_file_that_cannot_be_written_ends_in_one_line_naming_it():
    """Case 12: logging prints a traceback per record it cannot write; the command names the file once."""
    handler = logging.FileHandler("/dev/full")  # every write fails with ENOSPC
    chatty = logging.getLogger("tests.full_log")
    chatty.propagate = False

    def main(argv):
        chatty.addHandler(handler)
        for line in range(3):
            chatty.warning("line %d", line)
        chatty.removeHandler(handler)

    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            code = run_command("tool", main, [])
    finally:
        with contextlib.suppress(OSError):
            handler.close()
    assert code == 1
    assert stderr.getvalue() == ("tool: error: /dev/full: cannot write (no space left on the device: "
                                 "free some space or write elsewhere)\n")


def test_transcription_that_hits_a_file_size_limit_resumes_from_its_cache(mini_corpus, tmp_path):
    """Case 12, work kept: batches done before the write failure are reused by the next run."""
    out = tmp_path / "whisper"
    options = ["--splits", "Development", "--model", "bundled-tiny.en", "--batch_size", "2", "--no_progress"]
    base = ["data_prep.transcribe", "--data_folder", mini_corpus, "--out", out, *options]
    first = cli(python_module(*base, "--max_turns", "2"))
    assert first.returncode == 0, first.stderr[-3000:]
    (shard,) = (out / "cache").glob("*/shard-*.jsonl")
    limit = shard.stat().st_size + 1  # the next batch cannot be appended

    def limit_file_size():  # Python ignores SIGXFSZ: a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    failed = cli(python_module(*base, "--max_turns", "4"), preexec_fn=limit_file_size)
    assert failed.returncode == 1
    assert_one_line_error(failed, out, "file too large")
    resumed = cli(python_module(*base, "--max_turns", "4"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "transcribed 2 new turns, 2 from cache" in resumed.stdout
    assert len(pd.read_csv(out / "transcripts.csv", keep_default_na=False)) == 4
