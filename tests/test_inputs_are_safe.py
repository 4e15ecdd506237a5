"""No command destroys its inputs, and no package hides a swapped model (real commands only).

Each test runs the command a user would run and checks the one error line, the exit code, and
that every file that was there before is still there, byte for byte.
"""

import hashlib
import json
import shutil
import sys

import pytest

from tests.cli_helpers import assert_one_line_error, cli
from tests.conftest import run, train_command


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


def test_copied_systems_and_fusion_export_as_they_predict(demo_package, tmp_path):
    """A copied system + fusion pair that ser.predict accepts exports too (matched by identity)."""
    _, training = demo_package
    moved = tmp_path / "moved"
    shutil.copytree(training, moved)
    folders = [moved / f"system_{s}" / "1993" for s in "abcde" if (moved / f"system_{s}").is_dir()]
    done = export(*folders, "--fusion", moved / "fusion", "--out", tmp_path / "pkg")
    assert done.returncode == 0, done.stderr[-3000:]
