"""Fingerprints of files (sha256 of their bytes), remembered while a file stays as it was.

Systems and packages are checked against the fingerprints recorded when they were written
(``system.json``, ``ser_package.json``), so a swapped or damaged checkpoint is refused. Hashing
a real-size checkpoint takes most of a package's load time (0.8 s for WavLM-large's 1.3 GB on a
2-core CPU), so a large file's fingerprint is remembered with its status, as git's index
remembers a file's: device, inode, size, modification and change times. Replacing, rewriting,
copying over or renaming onto the file changes its inode or its change time (which no program
can set back), so the file is hashed again. A file modified in the last seconds is not
remembered, so a write in the same clock tick as the hash cannot hide.

The memory is one small JSON file, ``$SER_FINGERPRINT_CACHE`` or
``$XDG_CACHE_HOME/msp-ser/fingerprints.json`` (``~/.cache`` by default); ``SER_FINGERPRINT_CACHE=off``
hashes every time. It is only a shortcut: an unreadable or unwritable memory means hashing.
"""

import hashlib
import json
import os
import time
from pathlib import Path

from ser.io.atomic import write_json_atomic

#: Files smaller than this are hashed every time (faster than reading the memory).
REMEMBERED_FROM_BYTES = 16 << 20
#: Fingerprints kept in the memory (the most recently checked ones).
REMEMBERED_FILES = 256
#: A file modified less than this many seconds ago is hashed but not remembered.
SETTLED_SECONDS = 2.0
CACHE_VARIABLE = "SER_FINGERPRINT_CACHE"


def fingerprint_file(path, chunk=1 << 22):
    """``sha256:<hex>`` of a file's bytes (read in chunks: checkpoints can be gigabytes).

    A large file's fingerprint is remembered until the file changes (see the module's text).

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "model.ckpt")
    >>> _ = open(path, "wb").write(b"weights")
    >>> fingerprint_file(path)[:15]
    'sha256:9a129038'
    """
    path = Path(path)
    status = path.stat()
    key, state = str(path.resolve()), _state(status)
    remembered = _memory() if status.st_size >= REMEMBERED_FROM_BYTES else None
    if remembered is not None and remembered.get(key, {}).get("state") == state:
        return remembered[key]["fingerprint"]
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(chunk):
            digest.update(block)
    fingerprint = f"sha256:{digest.hexdigest()}"
    if remembered is not None and time.time() - status.st_mtime >= SETTLED_SECONDS:
        _remember(remembered, key, state, fingerprint)
    return fingerprint


def memory_file():
    """Where fingerprints are remembered; None when ``SER_FINGERPRINT_CACHE=off``.

    Example
    -------
    >>> import os
    >>> os.environ["SER_FINGERPRINT_CACHE"] = "/tmp/x/fingerprints.json"
    >>> str(memory_file())
    '/tmp/x/fingerprints.json'
    >>> del os.environ["SER_FINGERPRINT_CACHE"]
    """
    chosen = os.environ.get(CACHE_VARIABLE)
    if chosen:
        return None if chosen.lower() == "off" else Path(chosen)
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "msp-ser" / "fingerprints.json"


def _state(status):
    return [status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns]


def _memory():
    where = memory_file()
    if where is None:
        return None
    try:
        remembered = json.loads(where.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return remembered if isinstance(remembered, dict) else {}


def _remember(remembered, key, state, fingerprint):
    remembered.pop(key, None)  # re-inserted last: the most recently checked
    remembered[key] = {"state": state, "fingerprint": fingerprint}
    kept = dict(list(remembered.items())[-REMEMBERED_FILES:])
    try:
        write_json_atomic(memory_file(), kept)
    except OSError:
        pass  # a read-only home or a full disk: the next load hashes again
