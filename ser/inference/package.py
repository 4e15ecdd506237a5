"""The exported model package: its layout, and how a system is rebuilt from it.

``python -m ser.export`` writes one self-contained folder (see :mod:`ser.inference.export`)::

    my_model/
      ser_package.json           what is inside: systems (name, fusion label, folder), fusion, classes
      README.md                  model card (Hugging Face format)
      systems/system_d/
        hyperparams.yaml         the network only, paths relative to <system_folder>
        model.safetensors        the best checkpoint's weights (no optimizer, scheduler or loader state)
        encoders/<name>/         config.json, preprocessor and tokenizer files (no weights)
        transcriber.json         text systems: Whisper backend, model, decoding options
        metrics.json             dev results of train.py
      whisper/<name>/            the Whisper model, when training used a local folder
      fusion/fusion_model.joblib the fitted fusion (optional)

Nothing in it names a path of the machine that trained it: ``hyperparams.yaml`` refers to
``<system_folder>``, which :func:`load_packaged_system` sets to wherever the package lies now.
"""

import contextlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ser.cli import ArgumentParser, exit_with
from ser.errors import UserInputError
from ser.fusion_model import MODEL_INFO_FILE
from ser.io.atomic import write_json_atomic
from ser.io.model_source import resolve_model_source
from ser.io.system_folder import IDENTITY_FILE, fingerprint_file

__all__ = [
    "MANIFEST",
    "FORMAT",
    "PackageError",
    "resolve_package",
    "read_manifest",
    "fingerprint_package_files",
    "check_package_files",
    "files_checked_meanwhile",
    "load_packaged_system",
    "read_transcriber",
]

#: The file that makes a folder a package (and names what it holds).
MANIFEST = "ser_package.json"
#: Format 2 records a fingerprint of every file the package loads; format 1 did not
#: (:func:`upgrade_package` turns a format-1 package into a format-2 one).
FORMAT = "msp-ser-package/2"
FORMAT_WITHOUT_FINGERPRINTS = "msp-ser-package/1"
WEIGHTS = "model.safetensors"
HPARAMS = "hyperparams.yaml"
TRANSCRIBER = "transcriber.json"
#: The placeholder of a packaged system's own folder in its ``hyperparams.yaml``.
PACKAGE_KEY = "system_folder"


class PackageError(UserInputError, ValueError):
    """A folder that is not a usable exported package (names the file and the problem)."""


def resolve_package(source, cache_dir=None):
    """A local folder holding the package ``source``: a folder, or a Hugging Face id (cached).

    Raises
    ------
    ser.io.model_source.ModelNotAvailableError
        If the folder has no ``ser_package.json``, or the id is neither cached nor downloadable
        (offline: it must be cached or given as a local folder).

    Example
    -------
    >>> import tempfile
    >>> resolve_package(tempfile.mkdtemp())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ser.io.model_source.ModelNotAvailableError: model folder /... has no ser_package.json: ...
    """
    return Path(resolve_model_source(source, cache_dir, marker=MANIFEST,
                                     kind="a model package written by python -m ser.export"))


def read_manifest(folder, check_files=True):
    """The package's ``ser_package.json``, checked.

    With ``check_files`` False, the fingerprints of its files are left to the caller
    (:func:`files_checked_meanwhile`).

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / MANIFEST).write_text('{"format": "other/9"}')
    >>> read_manifest(folder)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ser.inference.package.PackageError: .../ser_package.json: format 'other/9', this version reads ...
    """
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise PackageError(f"{path}: unreadable package manifest ({error})") from None
    if manifest.get("format") == FORMAT_WITHOUT_FINGERPRINTS:
        raise PackageError(f"{path}: format {FORMAT_WITHOUT_FINGERPRINTS}, which records no fingerprints of "
                           f"its files; if you trust its files as they are, upgrade it with: python -m "
                           f"ser.inference.package {Path(folder)} (or export it again)")
    if manifest.get("format") != FORMAT:
        raise PackageError(f"{path}: format {manifest.get('format')!r}, this version reads {FORMAT}")
    for entry in manifest.get("systems") or []:
        if not (Path(folder) / entry["folder"] / WEIGHTS).is_file():
            raise PackageError(f"{Path(folder) / entry['folder'] / WEIGHTS}: missing from the package")
    if not manifest.get("systems"):
        raise PackageError(f"{path}: the package lists no system")
    if check_files:
        check_package_files(folder, manifest)
    return manifest


def fingerprint_package_files(folder):
    """``{relative path: sha256}`` of every file in a sub-folder of the package (what loading reads).

    The export records them in ``ser_package.json``; :func:`check_package_files` refuses a package
    whose files differ, as a ``train.py`` folder's ``system.json`` refuses a replaced checkpoint. The
    model card and the SpeechBrain files at the top stay free to edit.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> (folder / "systems" / "a").mkdir(parents=True)
    >>> _ = (folder / "systems" / "a" / "model.safetensors").write_bytes(b"weights")
    >>> _ = (folder / "README.md").write_text("card")
    >>> list(fingerprint_package_files(folder))
    ['systems/a/model.safetensors']
    """
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and len(p.relative_to(folder).parts) > 1)
    return {p.relative_to(folder).as_posix(): fingerprint_file(p) for p in files}


def check_package_files(folder, manifest):
    """Refuse a package whose systems, fusion or Whisper differ from those it was exported with.

    Every file recorded in the manifest's ``files`` must be there with the same bytes; each system
    must have its ``system.json`` and the fusion its ``fusion_model.json`` (the identities that tie
    them together).

    Raises
    ------
    PackageError
        Naming the file that is missing, replaced or damaged.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> check_package_files(folder, {"systems": []})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ser.inference.package.PackageError: .../ser_package.json: records no fingerprints of its files ...
    """
    folder = Path(folder)
    recorded = manifest.get("files")
    if not isinstance(recorded, dict):
        raise PackageError(f"{folder / MANIFEST}: records no fingerprints of its files (exported by an "
                           "earlier version); export it again with python -m ser.export")
    needed = [f"{entry['folder']}/{IDENTITY_FILE}" for entry in manifest.get("systems") or []]
    needed += [f"{manifest[key]}/{MODEL_INFO_FILE}" for key in ("fusion",) if manifest.get(key)]
    for name in needed:
        if name not in recorded:
            raise PackageError(f"{folder / name}: missing from the package, so its systems cannot be "
                               "checked against each other; export it again from train.py folders")
    for name, fingerprint in recorded.items():
        path = folder / name
        if not path.is_file():
            raise PackageError(f"{path}: missing from the package (it was exported with it); "
                               "restore it or export the package again")
        if fingerprint_file(path) != fingerprint:
            raise PackageError(f"{path}: not the file the package was exported with (its fingerprint "
                               "differs): replaced or damaged; restore it or export the package again")


@contextlib.contextmanager
def files_checked_meanwhile(folder):
    """Read the manifest and check its files' fingerprints in a thread while the block loads them.

    Hashing a real-size package (1.3 GB per WavLM-large system) takes about as long as building
    its networks; hashlib releases the GIL, so the two overlap. The block's result is used only
    after the check passed: leaving the block waits for it and raises its :class:`PackageError`.
    When the block fails, a failed check is the better explanation (a truncated weights file is
    "replaced or damaged" before it is "does not fit"), so its error is raised instead.

    Yields
    ------
    dict
        The manifest (:func:`read_manifest`, without the file check).

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> (folder / "systems" / "a").mkdir(parents=True)
    >>> _ = (folder / "systems" / "a" / WEIGHTS).write_bytes(b"weights")
    >>> _ = (folder / "systems" / "a" / IDENTITY_FILE).write_text("{}")
    >>> manifest = {"format": FORMAT, "systems": [{"folder": "systems/a"}],
    ...             "files": fingerprint_package_files(folder)}
    >>> _ = (folder / MANIFEST).write_text(json.dumps(manifest))
    >>> _ = (folder / "systems" / "a" / WEIGHTS).write_bytes(b"swapped")
    >>> with files_checked_meanwhile(folder):  # doctest: +ELLIPSIS
    ...     pass
    Traceback (most recent call last):
    ...
    ser.inference.package.PackageError: .../model.safetensors: not the file the package was exported with ...
    """
    manifest = read_manifest(folder, check_files=False)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="package-check") as pool:
        check = pool.submit(check_package_files, folder, manifest)
        try:
            yield manifest
        except Exception:
            check.result()
            raise
        check.result()


def upgrade_package(folder):
    """Turn a format-1 package into format 2: record the fingerprints of its files as they are now.

    Format 1 recorded no fingerprints, so nothing tells whether its files are the ones it was
    exported with: upgrading vouches for them. The manifest is rewritten atomically; the module
    paths its ``hyperparams.yaml`` files name load unchanged (:mod:`ser.module_aliases`).

    Returns
    -------
    Path
        The package's ``ser_package.json``.

    Raises
    ------
    PackageError
        If the folder is not a format-1 package, or lacks a system's ``system.json`` or the
        fusion's ``fusion_model.json`` (which tie the systems to the fusion).
    """
    folder = Path(folder)
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise PackageError(f"{path}: unreadable package manifest ({error})") from None
    if manifest.get("format") != FORMAT_WITHOUT_FINGERPRINTS:
        raise PackageError(f"{path}: format {manifest.get('format')!r}; only a "
                           f"{FORMAT_WITHOUT_FINGERPRINTS} package is upgraded")
    manifest = {**manifest, "format": FORMAT, "files": fingerprint_package_files(folder)}
    check_package_files(folder, manifest)  # the identities the format needs are there
    write_json_atomic(path, manifest)
    return path


def main(argv=None):
    """``python -m ser.inference.package PKG``: upgrade a format-1 package in place."""
    parser = ArgumentParser(prog="ser.inference.package",
                            description="Upgrade a model package of format 1 to the current format.")
    parser.add_argument("package", help="the package folder (written by an earlier python -m ser.export)")
    args = parser.parse_args(argv)
    path = upgrade_package(args.package)
    print(f"{path}: upgraded to {FORMAT} (fingerprints of its files recorded as they are now)")
    return 0


def load_packaged_system(folder, device="cpu"):
    """Rebuild a packaged system's network and load its weights.

    Parameters
    ----------
    folder : Path
        ``<package>/systems/<name>``.
    device : str

    Returns
    -------
    (dict, torch.nn.Module, dict or None)
        The hyperparameters, the model (eval mode, on ``device``) and the Whisper settings
        (``transcriber.json``, with the model path made absolute) for text systems.
    """
    from hyperpyyaml import load_hyperpyyaml
    from safetensors.torch import load_file

    folder = Path(folder)
    # Every weight is replaced by the package's (strict load below): initialising them first
    # would take longer than the load itself (3.5 s of 7.9 for WavLM-large on 2 CPU cores).
    with open(folder / HPARAMS, encoding="utf-8") as stream, _without_weight_init():
        hparams = load_hyperpyyaml(stream, {PACKAGE_KEY: str(folder)})
    model = hparams["model"]
    try:
        model.load_state_dict(load_file(folder / WEIGHTS), strict=True, assign=True)
    except RuntimeError as error:
        raise PackageError(f"{folder / WEIGHTS}: does not fit {folder / HPARAMS} ({error})") from None
    model.to(device).eval()
    return hparams, model, read_transcriber(folder)


def _without_weight_init():
    """torch's and transformers' weight initialisers as no-ops (transformers' own context)."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # transformers before 5
        from transformers.modeling_utils import no_init_weights
    return no_init_weights()


def read_transcriber(folder):
    """A packaged text system's Whisper settings (``transcriber.json``, its model path absolute).

    None for a speech-only system.
    """
    folder = Path(folder)
    if not (folder / TRANSCRIBER).is_file():
        return None
    transcriber = json.loads((folder / TRANSCRIBER).read_text(encoding="utf-8"))
    if transcriber.get("packaged"):
        transcriber["model"] = str(folder.parent.parent / transcriber["model"])
    return transcriber


if __name__ == "__main__":
    exit_with("ser.inference.package", main)
