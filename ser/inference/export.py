"""Export trained systems (and their fusion) as one self-contained model package.

Usage::

    python -m ser.export results/system_{a,b,c,d,e}/1993 --fusion results/fusion --out my_model/

Writes the folder described in :mod:`ser.inference.package`: per system the network's hyperparameters
(the ``model`` of its ``hyperparams.yaml``, nothing of training), the weights of its best
checkpoint as ``model.safetensors`` (no optimizer, scheduler, counter or loader state), the
configuration files of its encoders (their weights are in ``model.safetensors``), its Whisper
settings; the fitted fusion; and a model card ``README.md`` in the Hugging Face format.
A local Whisper model folder is copied in (``--whisper_by_name`` keeps only its name, for a
model faster-whisper downloads by name). ``--onnx`` / ``--int8`` add each network's ONNX graphs
(fp32 / int8) run by onnxruntime, after a parity check against PyTorch
(:mod:`ser.inference.onnx_export`). No absolute path of this machine goes into the package:
the export checks every text file it wrote. Load it with
``EmotionRecognizer.from_pretrained("my_model/")`` or ``python -m ser.predict --model my_model/``.

The package is written beside ``--out`` and renamed onto it when complete; an existing ``--out``
is replaced only with ``--overwrite``, and only when it is a package (its ``ser_package.json``) or
empty. ``--out`` may not be, contain or lie inside a system, fusion or parity input: the export
never deletes what it reads. Bad input exits 2 with one line, as every command does.
"""

import argparse
import json
import logging
import shutil
import tempfile
from pathlib import Path

import joblib
import ruamel.yaml
from safetensors.torch import save_file

from ser.cli import ArgumentParser, check_output_file, exit_with, positive_int
from ser.console import chatter_to_log
from ser.emotions import EMOTIONS
from ser.fusion_model import (
    ATTRIBUTE_FUSION_METRICS,
    ATTRIBUTE_MODEL_FILE,
    MODEL_FILE,
    MODEL_INFO_FILE,
    load_attribute_fusion,
    load_fusion,
    load_fusion_identities,
    split_fusion_dirs,
)
from ser.inference.loading import load_system
from ser.inference.model_card import base_model_id, training_data_kind, write_model_card
from ser.inference.network_files import (
    ExportError,
    copy_encoder_config,
    encoder_nodes,
    inference_yaml,
    unique_folder_name,
)
from ser.inference.onnx_export import add_onnx_runtime
from ser.inference.onnx_parity import DEFAULT_MIN_AGREEMENT, PARITY_FILE, check_parity_inputs, parity_table
from ser.inference.package import (
    FORMAT,
    HPARAMS,
    MANIFEST,
    TRANSCRIBER,
    WEIGHTS,
    fingerprint_package_files,
)
from ser.io import SAMPLE_RATE
from ser.io.atomic import ensure_writable_folder, named_write_failure, naming_output, write_json_atomic
from ser.io.json_files import read_json
from ser.io.safe_paths import refuse_output_over_inputs
from ser.io.system_folder import (
    IDENTITY_FILE,
    display_name,
    folder_system_name,
    match_identities,
    metrics_file,
    read_identity,
    run_folder,
    short_names,
)

logger = logging.getLogger(__name__)

__all__ = ["ExportError", "export_package", "inference_yaml"]

FIGURES = ("confusion_matrix.png", "f1_per_class.png")
#: Clips of the ONNX parity check unless ``--parity_clips`` says otherwise.
PARITY_CLIPS = 24
#: The package folder of the Task 2 fusion.
ATTRIBUTE_FUSION_FOLDER = "fusion_task2"


def _fusion_labels(fusion_dir, folders):
    """The fusion's name of each system folder, and the model.

    Folders are matched to the fused systems by identity (``system.json``), as ``ser.predict``
    matches them (:func:`ser.io.system_folder.match_identities`), wherever they lie now.
    """
    fusion_dir = Path(fusion_dir)
    model = load_fusion(fusion_dir)
    expected = load_fusion_identities(fusion_dir)
    classes = [index for index, folder in enumerate(folders) if _predicts(folder, "classes")]
    given = []
    for index in classes:
        identity = read_identity(folders[index], required=False)
        if identity is None:
            raise ExportError(f"{folders[index] / IDENTITY_FILE}: missing, so this system cannot be checked "
                              f"against the fusion {fusion_dir}; re-run the same train.py command on it")
        given.append((str(folders[index]), identity))
    order = match_identities(expected, given, str(fusion_dir))
    # A Task 2 system keeps its own name: its fusion, if any, is the attribute fusion.
    labels = list(short_names(folders))
    for label, position in zip(model.systems, order, strict=True):
        labels[classes[position]] = label
    return labels, model


def _predicts(folder, kind):
    """Whether a train.py folder predicts ``kind`` (``classes``, ``attributes``), from its system.json.

    A folder without one (trained before identities were written) is taken for a Task 1 system.
    """
    identity = read_identity(folder, required=False)
    if identity is None:
        return kind == "classes"
    return bool(identity.targets.get(kind))


def _attribute_fusion_labels(fusion_dir, folders):
    """The Task 2 fusion's name of each system folder that predicts attributes, and the model.

    The fusion names a system as ``fusion.attributes`` does: its ``system.json`` name shown as in
    the reports (``task2_d``, ``Sub-System A``).
    """
    model = load_attribute_fusion(fusion_dir)
    labels = {}
    for index, folder in enumerate(folders):
        if _predicts(folder, "attributes"):
            identity = read_identity(folder, required=False)
            labels[index] = display_name(identity.name if identity else folder_system_name(folder))
    fused = [label for label in labels.values() if label in model.systems]
    if sorted(fused) != sorted(model.systems):
        raise ExportError(f"the Task 2 fusion {fusion_dir} was trained on {', '.join(model.systems)}; the "
                          f"attribute systems given are {', '.join(labels.values()) or 'none'}: pass exactly "
                          "the fused systems' folders")
    return {index: label for index, label in labels.items() if label in model.systems}, model


def _export_system(folder, name, target, device="cpu"):
    """Write one system into ``target``; returns its manifest row (without label) and Whisper model."""
    system = load_system(folder, name, device)
    if system.identity is None:  # a package is checked as folders are: by the systems' identities
        raise ExportError(f"{folder / IDENTITY_FILE}: missing; re-run the same train.py command on this "
                          "folder (it only evaluates and writes it), then export")
    text = (folder / HPARAMS).read_text(encoding="utf-8")
    document = ruamel.yaml.YAML().load(text)
    nodes = encoder_nodes(document["model"])
    # An encoder is named by its YAML key (wavlm, hubert, text_encoder), else by its source folder.
    top_level = {id(value): key for key, value in document.items()}
    taken = {top_level[id(node)] for node in nodes if id(node) in top_level}
    names = [top_level.get(id(node)) or unique_folder_name(node["source"], taken) for node in nodes]
    packaged_yaml, sources = inference_yaml(text, names)
    target.mkdir(parents=True)
    (target / HPARAMS).write_text(packaged_yaml, encoding="utf-8")
    for node, source, encoder_name in zip(nodes, sources, names, strict=True):
        copy_encoder_config(source, node.get("save_path"), target / "encoders" / encoder_name)
    state = {key: value.detach().cpu().contiguous() for key, value in system.model.state_dict().items()}
    with naming_output(target / WEIGHTS):  # safetensors wraps a failed write in an error of its own
        save_file(state, target / WEIGHTS, metadata={"format": "pt", "system": name})
    for extra in (metrics_file(folder, "valid").name, IDENTITY_FILE):
        if (folder / extra).is_file():
            shutil.copy2(folder / extra, target / extra)
    return system.whisper.as_dict() if system.whisper is not None else None


def _check_no_local_paths(out, roots):
    """Fail if a text file of the package names one of this machine's training paths."""
    needles = sorted({str(Path(root).resolve()) for root in roots} | {str(root) for root in roots}, key=len)
    needles = [n for n in needles if len(n) > 1]
    for path in sorted(out.rglob("*")):
        if not path.is_file() or path.suffix not in (".json", ".yaml", ".md", ".txt", ".csv"):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for needle in needles:
            if needle in text:
                raise ExportError(f"{path.relative_to(out)}: names the local path {needle}; "
                                  "the package must not depend on this machine")


def export_package(system_dirs, out, fusion_dir=None, whisper_by_name=False, overwrite=False,
                   attribute_fusion_dir=None, runtime="pytorch", parity=None):
    """Write the package of ``system_dirs`` (and their fusion) to ``out``.

    Parameters
    ----------
    system_dirs : list of str or Path
        Folders written by train.py (or their parent with one seed folder).
    out : str or Path
        The package folder to create.
    fusion_dir : str or Path, optional
        Folder written by ``python -m fusion.fuse`` on exactly these systems.
    whisper_by_name : bool
        Keep a local Whisper model's folder name instead of copying the folder in.
    overwrite : bool
        Replace an existing ``out``.
    attribute_fusion_dir : str or Path, optional
        Folder written by ``python -m fusion.attributes`` on exactly the attribute systems among
        ``system_dirs`` (Task 2); a package may hold both fusions.
    runtime : str
        ``pytorch`` (default), ``onnx`` or ``onnx-int8``: the network each system runs with
        (:func:`ser.inference.onnx_export.add_onnx_runtime`, which refuses a runtime that changes labels).
    parity : dict, optional
        Options of that parity check (``min_agreement``, ``parity_audio``, ``parity_labels``,
        ``parity_clips``).

    Returns
    -------
    Path
        ``out``.
    """
    out = Path(out)
    for given in system_dirs:
        if Path(given).is_file():
            raise ExportError(f"{given}: is a file, not a system folder written by train.py")
    folders = [run_folder(d) for d in system_dirs]
    # Nothing the export reads may be replaced by the package or removed with an old one.
    inputs = [*system_dirs, *folders, fusion_dir, attribute_fusion_dir,
              *((parity or {}).get(key) for key in ("parity_audio", "parity_labels"))]
    refuse_output_over_inputs(out, inputs)
    _check_replaceable(out, overwrite)
    if runtime != "pytorch":  # now, not after the graphs are exported
        check_parity_inputs(**(parity or {}))
    if len({f.resolve() for f in folders}) != len(folders):
        raise ExportError("a system folder is given twice")
    names = short_names(folders)
    labels, fusion = (_fusion_labels(fusion_dir, folders) if fusion_dir is not None else (list(names), None))
    attribute_labels, attribute_fusion = {}, None
    if attribute_fusion_dir is not None:
        attribute_labels, attribute_fusion = _attribute_fusion_labels(attribute_fusion_dir, folders)
    ensure_writable_folder(out.absolute().parent)  # a file on the way is named, not "File exists"
    # A fresh staging folder of its own (never an existing one, which might be the user's).
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.absolute().parent))
    roots = [f.parent.parent for f in folders] + [Path(d) for d in (fusion_dir, attribute_fusion_dir) if d]
    try:
        entries, whisper_models = [], {}
        for folder, name, label in zip(folders, names, labels, strict=True):
            logger.info("exporting %s (%s)", folder, label)
            target = staging / "systems" / name
            whisper = _export_system(folder, name, target)
            if whisper is not None:
                model = Path(whisper["model"])
                if model.is_dir() and not whisper_by_name:
                    packaged = whisper_models.get(str(model))
                    if packaged is None:
                        packaged = f"whisper/{unique_folder_name(model, set(whisper_models.values()))}"
                        shutil.copytree(model, staging / packaged)
                        whisper_models[str(model)] = packaged
                        roots.append(model.parent)
                    whisper = {**whisper, "model": packaged, "packaged": True}
                elif model.is_absolute():
                    if not model.exists() and not whisper_by_name:
                        # ser.predict refuses this folder too: a package would name a model
                        # that no machine has.
                        raise ExportError(f"{folder}: its Whisper model {model} does not exist here; "
                                          "restore it, or pass --whisper_by_name to keep its name only")
                    whisper = {**whisper, "model": model.name, "packaged": False}
                    logger.warning("%s: Whisper model %s kept by name only (%s)", name, model, model.name)
                else:
                    whisper = {**whisper, "packaged": False}
                write_json_atomic(target / TRANSCRIBER, whisper)
            entry = {"name": name, "label": label, "folder": f"systems/{name}",
                     "uses_text": whisper is not None,
                     "metrics": _dev_summary(metrics_file(folder, "valid")),  # a bad one is named
                     **_provenance(folder)}
            attribute_label = attribute_labels.get(len(entries))
            if attribute_label is not None and attribute_label != label:
                if fusion is not None and label in fusion.systems:
                    entry["attribute_label"] = attribute_label
                else:
                    entry["label"] = attribute_label
            entries.append(entry)
        fusion_entry = None
        if fusion is not None:
            (staging / "fusion").mkdir()
            with open(staging / "fusion" / MODEL_FILE, "wb") as stream:
                joblib.dump(fusion, stream)
            info = json.loads((Path(fusion_dir) / MODEL_INFO_FILE).read_text(encoding="utf-8"))
            info["system_folders"] = [entries[labels.index(s)]["folder"] for s in fusion.systems]
            write_json_atomic(staging / "fusion" / MODEL_INFO_FILE, info)
            for figure in FIGURES:
                if (Path(fusion_dir) / figure).is_file():
                    shutil.copy2(Path(fusion_dir) / figure, staging / "fusion" / figure)
            fusion_entry = "fusion"
        attribute_fusion_entry = None
        if attribute_fusion is not None:
            attribute_fusion_entry = _export_attribute_fusion(attribute_fusion, attribute_fusion_dir,
                                                              staging / ATTRIBUTE_FUSION_FOLDER)
        manifest = {
            "format": FORMAT,
            "classes": list(EMOTIONS),
            "sample_rate": SAMPLE_RATE,
            "systems": entries,
            "fusion": fusion_entry,
            "attribute_fusion": attribute_fusion_entry,
        }
        write_json_atomic(staging / MANIFEST, manifest)
        write_model_card(staging, manifest, fusion_dir, attribute_fusion_dir)
        write_speechbrain_files(staging)
        # Last: what loading will check (every file the systems, fusions and Whisper load from).
        manifest = json.loads((staging / MANIFEST).read_text(encoding="utf-8"))
        manifest["files"] = fingerprint_package_files(staging)
        write_json_atomic(staging / MANIFEST, manifest)
        if runtime != "pytorch":
            # ONNX graphs beside the PyTorch weights, kept only if they agree with them (the
            # check loads the package, so after its fingerprints); then theirs are added.
            add_onnx_runtime(staging, runtime, **(parity or {}))
            manifest = json.loads((staging / MANIFEST).read_text(encoding="utf-8"))
            manifest["files"] = fingerprint_package_files(staging)
            write_json_atomic(staging / MANIFEST, manifest)
        _check_no_local_paths(staging, roots)
        if out.exists():
            # Checked again now that the Whisper folders it copied are known.
            refuse_output_over_inputs(out, [*inputs, *whisper_models])
            _check_replaceable(out, overwrite)
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException as error:
        # A failed write names the file under --out it was for, not the staging folder it went to;
        # looked at before the cleanup frees the space a full disk shows by.
        named = named_write_failure(error, out, staging) if isinstance(error, Exception) else None
        shutil.rmtree(staging, ignore_errors=True)
        if named is not None:
            raise named from error
        raise
    return out


def _check_replaceable(out, overwrite):
    """Refuse an existing ``out`` unless ``--overwrite`` is given and it is a package (or empty).

    ``--overwrite`` replaces only what ``ser.export`` wrote, recognised by its ``ser_package.json``:
    a folder of other files, a file or a link is the user's, and stays.
    """
    if not (out.exists() or out.is_symlink()):
        return
    if not overwrite:
        raise ExportError(f"{out}: already exists (pass --overwrite to replace it)")
    if out.is_symlink() or not out.is_dir():
        raise ExportError(f"--out {out}: is a {'link' if out.is_symlink() else 'file'}, not a package "
                          "folder; --overwrite replaces only a package written by ser.export")
    if any(out.iterdir()) and not _is_package(out):
        raise ExportError(f"--out {out}: not a package written by ser.export (no {MANIFEST}); --overwrite "
                          "replaces only such a package: choose another --out or remove it yourself")


def _is_package(folder):
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and str(manifest.get("format", "")).startswith(FORMAT.split("/")[0])


def _dev_summary(metrics_path):
    if not metrics_path.is_file():
        return None
    metrics = read_json(metrics_path)
    return {key: metrics[key] for key in ("macro_f1", "accuracy", "mean_ccc", "ccc") if key in metrics}


def _provenance(folder):
    """What a system was built from, for the model card: hub ids of its encoders, its training data.

    ``base_models`` keeps only sources that are Hugging Face ids (a local folder names nothing a
    reader can look up); ``training_data`` is :func:`ser.inference.model_card.training_data_kind`
    of the YAML's ``data_folder``.
    """
    document = ruamel.yaml.YAML().load((folder / HPARAMS).read_text(encoding="utf-8"))
    sources = [str(node["source"]) for node in encoder_nodes(document.get("model"))]
    base_models = list(dict.fromkeys(s for s in map(base_model_id, sources) if s))
    return {"base_models": base_models, "training_data": training_data_kind(document.get("data_folder"))}


def _export_attribute_fusion(model, fusion_dir, target):
    """Copy the Task 2 fusion (re-saved: its class is the library's) and its dev metrics."""
    target.mkdir()
    with open(target / ATTRIBUTE_MODEL_FILE, "wb") as stream:
        joblib.dump(model, stream)
    metrics_path = Path(fusion_dir) / ATTRIBUTE_FUSION_METRICS
    if metrics_path.is_file():
        metrics = read_json(metrics_path)
        metrics.pop("systems", None)  # their training folders: paths of this machine
        write_json_atomic(target / ATTRIBUTE_FUSION_METRICS, metrics)
    return target.name


def write_speechbrain_files(package):
    """What SpeechBrain's ``foreign_class`` loads: ``hyperparams.yaml`` and ``custom_interface.py``.

    The interface is :mod:`ser.inference.speechbrain_interface` (copied as it is); the YAML gives the
    ``modules`` and ``pretrainer`` SpeechBrain expects, both empty: the interface loads the package
    itself with :meth:`ser.inference.EmotionRecognizer.from_pretrained`.
    """
    from ser.inference import speechbrain_interface

    package = Path(package)
    shutil.copyfile(speechbrain_interface.__file__, package / speechbrain_interface.INTERFACE_FILE)
    (package / HPARAMS).write_text(speechbrain_interface.PACKAGE_HPARAMS, encoding="utf-8")


def package_size(folder):
    """Bytes of every file under ``folder``."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def build_parser():
    parser = ArgumentParser(prog="ser.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("systems", nargs="+", metavar="SYSTEM_DIR",
                        help="system folders written by train.py (or a parent holding one seed folder)")
    parser.add_argument("--fusion", metavar="DIR", action="append",
                        help="fusion folder of python -m fusion.fuse (Task 1) or python -m fusion.attributes "
                             "(Task 2); give --fusion twice for both")
    parser.add_argument("--out", required=True, help="package folder to write")
    parser.add_argument("--whisper_by_name", action="store_true",
                        help="do not copy a local Whisper model folder in; keep its name")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--log", help="file for the libraries' messages (default: ser_export.log in the "
                                      "temporary folder)")
    onnx = parser.add_argument_group("ONNX runtime (pip install 'msp-ser[onnx]'; ser.inference.onnx_export)")
    onnx.add_argument("--onnx", action="store_true", help="also export each network to ONNX (fp32); "
                      "the package then runs in onnxruntime")
    onnx.add_argument("--int8", action="store_true",
                      help="as --onnx, with the encoders' linear layers in int8")
    onnx.add_argument("--min_agreement", type=_percentage, metavar="PERCENT",
                      help="refuse the export when a system agrees with PyTorch on fewer labels "
                           f"(default: {DEFAULT_MIN_AGREEMENT['onnx']:g} for --onnx, "
                           f"{DEFAULT_MIN_AGREEMENT['onnx-int8']:g} for --int8)")
    onnx.add_argument("--parity_audio", metavar="DIR",
                      help="audio files of the parity check (e.g. development turns); "
                           "default: synthetic clips")
    onnx.add_argument("--parity_labels", metavar="CSV",
                      help="FileName,EmoClass of --parity_audio (labels_consensus.csv): adds macro-F1")
    onnx.add_argument("--parity_clips", type=positive_int, metavar="N",
                      help=f"clips of the parity check (at most N files of --parity_audio; default "
                           f"{PARITY_CLIPS})")
    return parser


def _percentage(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"a percentage of labels, from 0 to 100, got {text}")
    return value


def main(argv=None):
    """Run the CLI; returns the exit code (0 done, 1 a file could not be written, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    runtime = "onnx-int8" if args.int8 else "onnx" if args.onnx else "pytorch"
    parity_given = [f"--{key}" for key in ("min_agreement", "parity_audio", "parity_labels", "parity_clips")
                    if getattr(args, key) is not None]
    if runtime == "pytorch" and parity_given:
        # Without an ONNX runtime there is no parity check: the options would be ignored unseen.
        parser.error(f"{parity_given[0]} goes with --onnx or --int8 (the parity check of an ONNX runtime)")
    fusion_dir, attribute_fusion_dir = split_fusion_dirs(args.fusion)
    parity = {"min_agreement": args.min_agreement, "parity_audio": args.parity_audio,
              "parity_labels": args.parity_labels, "parity_clips": args.parity_clips or PARITY_CLIPS}
    # Not beside --out: a refused export leaves nothing there, nor replaces an earlier export's log.
    log = Path(args.log) if args.log else Path(tempfile.gettempdir()) / "ser_export.log"
    check_output_file(log, "--log", "ser_export.log")
    # Loading systems and quantizing graphs is chatty (onnxruntime lists every tensor it quantizes):
    # the console keeps this command's stage lines, its warnings and the results.
    with chatter_to_log(log, own_level=logging.INFO):
        # A runtime that would change answers (ParityError), like any bad input, ends in one line, exit 2.
        out = export_package(args.systems, args.out, fusion_dir, args.whisper_by_name, args.overwrite,
                             attribute_fusion_dir, runtime, parity)
    print(f"Messages of the libraries: {log}")
    if runtime != "pytorch":
        print(parity_table(json.loads((out / PARITY_FILE).read_text(encoding="utf-8")), runtime))
    print(f"Package written to {out} ({package_size(out) / 1e6:.1f} MB); load it with "
          f"EmotionRecognizer.from_pretrained({str(out)!r}) or python -m ser.predict --model {out} FILES")
    return 0


if __name__ == "__main__":
    exit_with("ser.export", main, interrupted="nothing was written to --out; run the same command again")
