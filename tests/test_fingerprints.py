"""Remembered fingerprints: a large file is hashed once, and again as soon as it changes."""

import json
import os

import pytest

from ser.io import fingerprints
from ser.io.fingerprints import fingerprint_file

MB = 1 << 20


@pytest.fixture
def memory(tmp_path, monkeypatch):
    where = tmp_path / "memory" / "fingerprints.json"
    monkeypatch.setenv("SER_FINGERPRINT_CACHE", str(where))
    return where


def settled_file(path, payload):
    """Write ``payload`` and date the file a minute back, as a checkpoint written earlier is."""
    path.write_bytes(payload)
    past = path.stat().st_mtime - 60
    os.utime(path, (past, past))
    return path


def fresh_sha256(path):
    import hashlib

    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_large_settled_file_is_remembered_and_the_memory_is_what_answers(memory, tmp_path):
    weights = settled_file(tmp_path / "model.safetensors", b"w" * (17 * MB))
    assert fingerprint_file(weights) == fresh_sha256(weights)
    remembered = json.loads(memory.read_text())
    assert list(remembered) == [str(weights.resolve())]
    # The file is unchanged, so the answer comes from the memory, not from hashing again.
    remembered[str(weights.resolve())]["fingerprint"] = "sha256:from-memory"
    memory.write_text(json.dumps(remembered))
    assert fingerprint_file(weights) == "sha256:from-memory"


SWAPS = ["rewritten in place", "rewritten, modification time set back", "replaced by a copy"]


@pytest.mark.parametrize("swap", SWAPS)
def test_a_changed_file_is_hashed_again(memory, tmp_path, swap):
    weights = settled_file(tmp_path / "model.safetensors", b"a" * (17 * MB))
    before = weights.stat()
    fingerprint_file(weights)
    other = b"b" * (17 * MB)  # same size: only the status tells the files apart
    if swap == "replaced by a copy":
        settled_file(tmp_path / "other.safetensors", other).replace(weights)
    else:
        weights.write_bytes(other)
        if swap == "rewritten, modification time set back":
            os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert fingerprint_file(weights) == fresh_sha256(weights)


def test_small_fresh_and_unremembered_files_are_always_hashed(memory, tmp_path, monkeypatch):
    small = settled_file(tmp_path / "system.json", b"{}")
    fresh = tmp_path / "model.ckpt"
    fresh.write_bytes(b"c" * (17 * MB))  # modified just now: a write in the same tick could hide
    assert fingerprint_file(small) == fresh_sha256(small)
    assert fingerprint_file(fresh) == fresh_sha256(fresh)
    assert not memory.exists()
    monkeypatch.setenv("SER_FINGERPRINT_CACHE", "off")
    large = settled_file(tmp_path / "large.safetensors", b"d" * (17 * MB))
    assert fingerprint_file(large) == fresh_sha256(large)
    assert not memory.exists()


def test_a_damaged_or_unwritable_memory_only_means_hashing(memory, tmp_path):
    weights = settled_file(tmp_path / "model.safetensors", b"e" * (17 * MB))
    memory.parent.mkdir(parents=True)
    memory.write_text("{not json")
    assert fingerprint_file(weights) == fresh_sha256(weights)
    assert str(weights.resolve()) in json.loads(memory.read_text())  # rewritten whole
    memory.unlink()
    memory.mkdir()  # a folder where the file should be: cannot be written
    assert fingerprint_file(weights) == fresh_sha256(weights)
    assert fingerprints.memory_file() == memory
