"""Killed with SIGKILL at a chosen point, every long job resumes and loses nothing.

Each test runs the real command in a subprocess. ``tests/killpoints`` holds a
``sitecustomize`` that, when ``MSP_SER_KILL_AT`` is set, makes the process
SIGKILL itself at the n-th call of a chosen function (before it, after it, or
half-way through writing a file): the same death as an OOM killer or a
cluster pre-emption, at a point the test controls.
"""

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest
import torch
import yaml

from tests.conftest import ROOT, SYSTEMS, THREADS, run, train_command

KILLPOINTS = ROOT / "tests" / "killpoints"
EPOCHS = "--number_of_epochs=3"


def run_until_killed(command, kill_at):
    """Run ``command`` with a kill point; assert that it died of SIGKILL; its output."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": THREADS,
        "PYTHONPATH": os.pathsep.join([str(KILLPOINTS), str(ROOT)]),
        "MSP_SER_KILL_AT": kill_at,
    }
    # Output to a file, not a pipe, and in a session of its own: the killed program's helper
    # processes (joblib's loky workers in the fusion) outlive it, as after a real crash, and
    # would hold a pipe open for their idle timeout (5 min); they are killed with its session.
    with tempfile.TemporaryFile("w+") as output:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
                                   text=True, start_new_session=True)
        try:
            returncode = process.wait(timeout=600)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        output.seek(0)
        text = output.read()
    assert returncode == -signal.SIGKILL, f"not killed at {kill_at}:\n{text[-3000:]}"
    return text


def snapshot(folder, skip=("log.txt", "env.log")):
    """Relative path -> sha256 of every output file (checkpoint folder names without their time stamp).

    Logs are left out (``skip``, and ``ser.predict``'s ``*.log`` of the libraries' messages): they
    record the run that wrote them, not what it produced.
    """
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name not in skip and path.suffix != ".log":
            relative = path.relative_to(folder).as_posix()
            parts = ["CKPT" if part.startswith("CKPT+") else part for part in relative.split("/")]
            files["/".join(parts)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def checkpoints(save_folder):
    """(meta, folder) of each complete checkpoint, oldest epoch first."""
    found = []
    for folder in save_folder.glob("CKPT+*"):
        meta = yaml.safe_load((folder / "CKPT.yaml").read_text())
        found.append((meta, folder))
    return sorted(found, key=lambda item: (item[0].get("epoch", 0), item[0].get("step", 0)))


def training_state(save_folder):
    """Tensors of the optimizers, schedulers and epoch counter in the latest checkpoint."""
    _, folder = checkpoints(save_folder)[-1]
    state = {"counter": (folder / "counter.ckpt").read_text()}
    for path in folder.glob("optimizer_*.ckpt"):
        state[path.stem] = torch.load(path, weights_only=False)["state"]
    for path in folder.glob("lr_annealing_*.ckpt"):
        state[path.stem] = torch.load(path, weights_only=False)
    return state


def assert_same_training_state(got, expected):
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        if name.startswith("optimizer_"):
            for index, slots in value.items():
                for slot, tensor in slots.items():
                    assert torch.equal(got[name][index][slot], tensor), f"{name} {index} {slot} differs"
        else:
            assert got[name] == value, f"{name} differs"


def experiment_folder(results):
    return results / "system_a" / "1993"


def log_lines(folder):
    # The evaluation line names the metrics file, whose path differs between runs.
    text = (folder / "train_log.txt").read_text()
    return [line for line in text.splitlines() if not line.startswith("evaluation:")]


@pytest.fixture(scope="module")
def uninterrupted(mini_corpus, tiny_models, tmp_path_factory):
    """System A trained for 3 epochs without interruption: what a resumed run must end with."""
    results = tmp_path_factory.mktemp("uninterrupted")
    run(train_command("a", mini_corpus, results, tiny_models, EPOCHS))
    folder = experiment_folder(results)
    return {"files": snapshot(folder), "state": training_state(folder / "save"), "log": log_lines(folder)}


def assert_like_uninterrupted(folder, uninterrupted):
    files = snapshot(folder)
    assert sorted(files) == sorted(uninterrupted["files"])
    for name in ("posteriors/valid.csv", "posteriors/test.csv", "metrics.json", "manifests/train.json"):
        assert files[name] == uninterrupted["files"][name], f"{name} differs from the uninterrupted run"
    assert log_lines(folder) == uninterrupted["log"]
    assert_same_training_state(training_state(folder / "save"), uninterrupted["state"])


def test_training_killed_mid_epoch_resumes_where_it_stopped(
    mini_corpus, tiny_models, tmp_path, uninterrupted
):
    command = train_command("a", mini_corpus, tmp_path, tiny_models, EPOCHS, "--ckpt_interval_steps=2")
    folder = experiment_folder(tmp_path)
    # Killed right after the intra-epoch checkpoint at step 2 of epoch 2.
    run_until_killed(
        command, "ser.checkpoints|AtomicCheckpointer.save_checkpoint|'epoch': 2, 'step': 2|1|after"
    )
    latest, _ = checkpoints(folder / "save")[-1]
    assert latest.get("brain_intra_epoch_ckpt") and (latest["epoch"], latest["step"]) == (2, 2)
    assert len(log_lines(folder)) == 1, "only epoch 1 finished before the kill"

    done = run(command)
    assert "Loading a checkpoint" in done.stderr + done.stdout
    # Same epochs (each logged once), same optimizer/scheduler/counter states, same posteriors:
    # the random generators and the data order are restored along with the model.
    assert_like_uninterrupted(folder, uninterrupted)


def test_sigterm_checkpoints_after_the_step_and_the_rerun_resumes_there(
    mini_corpus, tiny_models, tmp_path, uninterrupted
):
    """What a pre-empted job sees: SIGTERM, a checkpoint after the step, exit 143, resume."""
    command = train_command("a", mini_corpus, tmp_path, tiny_models, EPOCHS)
    folder = experiment_folder(tmp_path)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": THREADS,
           "PYTHONPATH": os.pathsep.join([str(KILLPOINTS), str(ROOT)]),
           # SIGTERM arrives during the 3rd training step of epoch 1.
           "MSP_SER_KILL_AT": "speechbrain.core|Brain.fit_batch||3|sigterm"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)

    assert done.returncode == 128 + signal.SIGTERM, done.stderr[-3000:]
    assert "stopped by SIGTERM at epoch 1, step 3" in done.stderr
    latest, _ = checkpoints(folder / "save")[-1]
    assert latest.get("brain_intra_epoch_ckpt") and (latest["epoch"], latest["step"]) == (1, 3)
    assert not (folder / "posteriors").exists()

    done = run(command)
    assert "Loading a checkpoint" in done.stderr + done.stdout
    assert_like_uninterrupted(folder, uninterrupted)


def test_half_written_checkpoint_is_never_loaded(mini_corpus, tiny_models, tmp_path, uninterrupted):
    command = train_command("a", mini_corpus, tmp_path, tiny_models, EPOCHS)
    folder = experiment_folder(tmp_path)
    # Killed half-way through writing the model of the end-of-epoch-2 checkpoint.
    run_until_killed(command, "torch|save|model.ckpt|2|midwrite")
    staged = list((folder / "save").glob("staging+CKPT+*"))
    assert staged, "the kill should have left a checkpoint being written"
    for _, complete in checkpoints(folder / "save"):
        torch.load(complete / "model.ckpt", weights_only=False)  # every visible checkpoint loads

    done = run(command)
    assert "interrupted while being written" in done.stderr + done.stdout
    assert not list((folder / "save").glob("staging+*"))
    assert_like_uninterrupted(folder, uninterrupted)


def _prepare(corpus, out):
    return [
        sys.executable,
        "-m",
        "data_prep.msp_prepare",
        f"--data_folder={corpus}",
        f"--save_folder={out}",
        "--transcripts=none",
    ]


def _relabel(corpus, out):
    return [
        sys.executable,
        "-m",
        "data_prep.consensus",
        f"--data_folder={corpus}",
        f"--out={out}/relabeled.csv",
    ]


def _fuse(results, out):
    systems = [str(results / f"system_{s}") for s in SYSTEMS]
    return [sys.executable, "-m", "fusion.fuse", *systems, f"--out={out}", "--folds=2", "--inner-folds=2"]


def _predict(results, corpus, out):
    wavs = sorted((corpus / "Audios").glob("*.wav"))[:6]
    systems = [str(results / f"system_{s}" / "1993") for s in "ad"]
    return [
        sys.executable,
        "-m",
        "ser.predict",
        *map(str, wavs),
        "--systems",
        *systems,
        f"--out={out}/predictions.csv",
        "--no_progress",
    ]


# (job, the output whose rename is the kill point, which occurrence)
JOBS = [
    ("prepare", "prepare_options.json", 1),  # every manifest written, the "done" mark not
    ("prepare", "valid.json", 1),
    ("relabel", "relabeled.csv", 1),
    ("fuse", "report.md", 1),
    ("fuse", "submission.csv", 1),
    ("predict", "predictions.csv", 1),
]


@pytest.mark.parametrize(("job", "output", "occurrence"), JOBS)
def test_killed_job_leaves_no_half_file_and_reruns_complete(
    job, output, occurrence, mini_corpus, debug_results, tmp_path
):
    out = tmp_path / "out"
    command = {
        "prepare": lambda: _prepare(mini_corpus, out),
        "relabel": lambda: _relabel(mini_corpus, out),
        "fuse": lambda: _fuse(debug_results, out),
        "predict": lambda: _predict(debug_results, mini_corpus, out),
    }[job]()
    run(command)
    expected = snapshot(out)
    assert any(name.endswith(output) for name in expected)
    shutil.rmtree(out)

    run_until_killed(command, f"os|replace|{output}'|{occurrence}|before")
    for name, digest in snapshot(out).items():
        # Whatever is visible is whole: byte-identical to the uninterrupted run's file.
        assert not name.endswith(output), f"{name} appeared although the kill came before its rename"
        if not name.endswith(".tmp"):  # the file being written when the kill came
            assert expected.get(name) == digest, f"{name} is not a complete output"
    run(command)
    assert snapshot(out) == expected
