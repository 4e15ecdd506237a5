"""Export trained systems (and their fusion) as one self-contained model package.

Usage::

    python -m ser.export results/system_{a,b,c,d,e}/1993 --fusion results/fusion --out my_model/

Writes the folder described in :mod:`ser.inference.package`: per system the network's hyperparameters
(the ``model`` of its ``hyperparams.yaml``, nothing of training), the weights of its best
checkpoint as ``model.safetensors`` (no optimizer, scheduler, counter or loader state), the
configuration files of its encoders (their weights are in ``model.safetensors``), its Whisper
settings; the fitted fusion; and a model card ``README.md`` in the Hugging Face format.
A local Whisper model folder is copied in (``--whisper_by_name`` keeps only its name, for a
model faster-whisper downloads by name). No absolute path of this machine goes into the package:
the export checks every text file it wrote. Load it with
``EmotionRecognizer.from_pretrained("my_model/")`` or ``python -m ser.predict --model my_model/``.

The package is written beside ``--out`` and renamed onto it when complete; an existing ``--out``
is replaced only with ``--overwrite``.
"""

import io
import json
import logging
import shutil
import sys
from pathlib import Path

import joblib
import ruamel.yaml
from ruamel.yaml.comments import TaggedScalar
from safetensors.torch import save_file

from ser.cli import ArgumentParser, exit_with
from ser.emotions import EMOTIONS
from ser.errors import UserInputError
from ser.fusion_model import MODEL_FILE, MODEL_INFO_FILE, load_fusion
from ser.inference.loading import load_system
from ser.inference.model_card import write_model_card
from ser.inference.package import FORMAT, HPARAMS, MANIFEST, PACKAGE_KEY, TRANSCRIBER, WEIGHTS
from ser.io import SAMPLE_RATE
from ser.io.atomic import write_json_atomic
from ser.io.model_source import resolve_model_source
from ser.io.system_folder import IDENTITY_FILE, metrics_file, run_folder, short_names

logger = logging.getLogger(__name__)

__all__ = ["ExportError", "export_package", "inference_yaml"]

ENCODER_TAGS = ("!new:ser.nn.encoders.SpeechEncoder", "!new:ser.nn.encoders.TextEncoder")
# Weight files of a pretrained encoder's folder: the package's model.safetensors replaces them.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".ot")
# Keys of the training YAML that inference reads besides the network.
INFERENCE_KEYS = ("eval_max_duration", "n_classes", "classes", "attributes", "attribute_scale")
FIGURES = ("confusion_matrix.png", "f1_per_class.png")


class ExportError(UserInputError, ValueError):
    """Systems or a fusion that cannot be exported (names the folder and the problem)."""


def _tagged(value, tag):
    return TaggedScalar(value=value, tag=tag)


def _encoder_nodes(node):
    """Every mapping of ``node`` (recursively) that builds a SpeechEncoder or TextEncoder."""
    found = []
    if isinstance(node, dict):
        tag = getattr(getattr(node, "tag", None), "value", None)
        if tag in ENCODER_TAGS:
            found.append(node)
        for value in node.values():
            found.extend(_encoder_nodes(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_encoder_nodes(value))
    unique = {id(n): n for n in found}  # an encoder shared by two branches appears twice
    return list(unique.values())


def inference_yaml(yaml_text, encoder_names):
    """The network part of a system's ``hyperparams.yaml``, encoders pointing into the package.

    Keeps ``model`` (with everything it builds) and :data:`INFERENCE_KEYS`; each encoder gets
    ``source: !ref <system_folder>/encoders/<name>`` and ``pretrained: False`` (its weights
    come from ``model.safetensors``).

    Parameters
    ----------
    yaml_text : str
        The ``hyperparams.yaml`` train.py saved (references resolved, objects anchored).
    encoder_names : list of str
        One folder name per encoder, in the order they appear in the YAML.

    Returns
    -------
    (str, list of str)
        The YAML text and the original ``source`` of each encoder.

    Example
    -------
    >>> text = '''
    ... data_folder: /data/msp
    ... eval_max_duration: 30.0
    ... enc: &id1 !new:ser.nn.encoders.TextEncoder
    ...   source: /home/me/roberta
    ...   save_path: /home/me/cache
    ... model: !new:ser.nn.model.EmotionClassifier
    ...   head: !new:torch.nn.Linear
    ...     in_features: 4
    ...     out_features: 8
    ...   text_branches:
    ...   - !new:ser.nn.model.TextBranch
    ...     encoder: *id1
    ...     pooling: !new:ser.nn.pooling.MeanPooling
    ... '''
    >>> out, sources = inference_yaml(text, ["roberta"])
    >>> sources, "/home" in out, "/data" in out
    (['/home/me/roberta'], False, False)
    >>> print(out.split("model:")[1].split("head:")[0].strip())
    !new:ser.nn.model.EmotionClassifier
    >>> "source: !ref <system_folder>/encoders/roberta" in out
    True
    """
    yaml = ruamel.yaml.YAML()
    document = yaml.load(yaml_text)
    if "model" not in document:
        raise ExportError("the hyperparameters define no 'model'")
    encoders = _encoder_nodes(document["model"])
    if len(encoders) != len(encoder_names):
        raise ExportError(f"{len(encoders)} encoders in the model, {len(encoder_names)} names given")
    sources = []
    for node, name in zip(encoders, encoder_names, strict=True):
        sources.append(str(node["source"]))
        node["source"] = _tagged(f"<{PACKAGE_KEY}>/encoders/{name}", "!ref")
        node["save_path"] = _tagged(f"<{PACKAGE_KEY}>/encoders", "!ref")
        node["pretrained"] = False
    kept = ruamel.yaml.comments.CommentedMap()
    kept[PACKAGE_KEY] = _tagged("", "!PLACEHOLDER")
    for key in INFERENCE_KEYS:
        if key in document:
            kept[key] = document[key]
    kept["model"] = document["model"]
    stream = io.StringIO()
    yaml.dump(kept, stream)
    # The training file's comments land in odd places once keys are dropped: leave them out.
    lines = stream.getvalue().splitlines()
    body = [line for line in lines if line.strip() and not line.strip().startswith("#")]
    header = ["# Inference hyperparameters of an exported system (python -m ser.export).",
              f"# <{PACKAGE_KEY}> is set by the loader to this system's folder in the package."]
    return "\n".join(header + body) + "\n", sources


def _encoder_name(source, taken):
    base = Path(str(source).rstrip("/")).name or "encoder"
    name, index = base, 2
    while name in taken:
        name, index = f"{base}_{index}", index + 1
    taken.add(name)
    return name


def _copy_encoder_config(source, cache, target):
    """Copy what builds an encoder (config, preprocessor, tokenizer), not its weights."""
    local = Path(resolve_model_source(source, cache))
    target.mkdir(parents=True)
    for path in sorted(local.iterdir()):
        if path.is_file() and not path.name.endswith(_WEIGHT_SUFFIXES):
            if path.suffix == ".json":
                _write_clean_json(path, target / path.name)
            else:
                shutil.copy2(path, target / path.name)


def _write_clean_json(source, target):
    """Copy a JSON file, dropping the ``_name_or_path`` entries that record where it was built."""
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        shutil.copy2(source, target)
        return
    if isinstance(data, dict):
        for key in ("_name_or_path", "name_or_path"):
            data.pop(key, None)
    target.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _fusion_labels(fusion_dir, folders):
    """The fusion's name of each system folder (from its ``fusion_model.json``), and the model."""
    fusion_dir = Path(fusion_dir)
    model = load_fusion(fusion_dir)
    info_path = fusion_dir / MODEL_INFO_FILE
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ExportError(f"{info_path}: unreadable ({error})") from None
    pairs = zip(info["system_folders"], info["systems"], strict=True)
    by_folder = {Path(folder).resolve(): name for folder, name in pairs}
    labels = []
    for folder in folders:
        label = by_folder.get(folder.resolve())
        if label is None:
            raise ExportError(f"{folder}: not one of the systems the fusion {fusion_dir} was trained on "
                              f"({', '.join(info['system_folders'])})")
        labels.append(label)
    if sorted(labels) != sorted(model.systems):
        raise ExportError(f"the fusion {fusion_dir} was trained on {', '.join(model.systems)}; the systems "
                          f"given are {', '.join(labels)}: pass exactly the fused systems' folders")
    return labels, model


def _export_system(folder, name, target, device="cpu"):
    """Write one system into ``target``; returns its manifest row (without label) and Whisper model."""
    system = load_system(folder, name, device)
    text = (folder / HPARAMS).read_text(encoding="utf-8")
    document = ruamel.yaml.YAML().load(text)
    nodes = _encoder_nodes(document["model"])
    # An encoder is named by its YAML key (wavlm, hubert, text_encoder), else by its source folder.
    top_level = {id(value): key for key, value in document.items()}
    taken = {top_level[id(node)] for node in nodes if id(node) in top_level}
    names = [top_level.get(id(node)) or _encoder_name(node["source"], taken) for node in nodes]
    packaged_yaml, sources = inference_yaml(text, names)
    target.mkdir(parents=True)
    (target / HPARAMS).write_text(packaged_yaml, encoding="utf-8")
    for node, source, encoder_name in zip(nodes, sources, names, strict=True):
        _copy_encoder_config(source, node.get("save_path"), target / "encoders" / encoder_name)
    state = {key: value.detach().cpu().contiguous() for key, value in system.model.state_dict().items()}
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


def export_package(system_dirs, out, fusion_dir=None, whisper_by_name=False, overwrite=False):
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

    Returns
    -------
    Path
        ``out``.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise ExportError(f"{out}: already exists (pass --overwrite to replace it)")
    folders = [run_folder(d) for d in system_dirs]
    if len({f.resolve() for f in folders}) != len(folders):
        raise ExportError("a system folder is given twice")
    names = short_names(folders)
    labels, fusion = (_fusion_labels(fusion_dir, folders) if fusion_dir is not None else (list(names), None))
    staging = out.parent / f".{out.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    roots = [f.parent.parent for f in folders] + ([Path(fusion_dir)] if fusion_dir else [])
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
                        packaged = f"whisper/{_encoder_name(model, set(whisper_models.values()))}"
                        shutil.copytree(model, staging / packaged)
                        whisper_models[str(model)] = packaged
                        roots.append(model.parent)
                    whisper = {**whisper, "model": packaged, "packaged": True}
                elif model.is_absolute():
                    whisper = {**whisper, "model": model.name, "packaged": False}
                    logger.warning("%s: Whisper model %s kept by name only (%s)", name, model, model.name)
                else:
                    whisper = {**whisper, "packaged": False}
                write_json_atomic(target / TRANSCRIBER, whisper)
            entries.append({"name": name, "label": label, "folder": f"systems/{name}",
                            "uses_text": whisper is not None,
                            "metrics": _dev_summary(target / "metrics.json")})
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
        manifest = {
            "format": FORMAT,
            "classes": list(EMOTIONS),
            "sample_rate": SAMPLE_RATE,
            "systems": entries,
            "fusion": fusion_entry,
        }
        write_json_atomic(staging / MANIFEST, manifest)
        write_model_card(staging, manifest, fusion_dir)
        _check_no_local_paths(staging, roots)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _dev_summary(metrics_path):
    if not metrics_path.is_file():
        return None
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    return {key: metrics[key] for key in ("macro_f1", "accuracy") if key in metrics}


def package_size(folder):
    """Bytes of every file under ``folder``."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def build_parser():
    parser = ArgumentParser(prog="ser.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("systems", nargs="+", metavar="SYSTEM_DIR", help="system folders written by train.py")
    parser.add_argument("--fusion", metavar="DIR", help="fusion folder written by python -m fusion.fuse")
    parser.add_argument("--out", required=True, help="package folder to write")
    parser.add_argument("--whisper_by_name", action="store_true",
                        help="do not copy a local Whisper model folder in; keep its name")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    return parser


def main(argv=None):
    """Run the CLI; returns the exit code (0 done, 1 failed, 2 bad arguments)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        out = export_package(args.systems, args.out, args.fusion, args.whisper_by_name, args.overwrite)
    except ValueError as error:  # folders that cannot make one package (user errors: the edge below)
        print(f"ser.export: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    print(f"Package written to {out} ({package_size(out) / 1e6:.1f} MB); load it with "
          f"EmotionRecognizer.from_pretrained({str(out)!r}) or python -m ser.predict --model {out} FILES")
    return 0


if __name__ == "__main__":
    exit_with("ser.export", main, interrupted="nothing was written to --out; run the same command again")
