"""Start-up of an exported package against the time of classifying one clip, in fresh processes.

Each run is a new Python process, as ``python -m ser.predict --model PKG`` is, and times in turn:

- *import torch*, then *import ser* (:mod:`ser.inference.recognizer`);
- *import model code*: what the package's runtime needs: the modules its PyTorch networks are
  built from (transformers' model classes, SpeechBrain's wrappers), or onnxruntime, which any
  program running these networks imports;
- *load*: :meth:`~ser.inference.recognizer.EmotionRecognizer.from_pretrained`, the package's own
  start-up (networks built, weights loaded, every file's fingerprint checked);
- *first clip* and *next clip*: ``classify_batch`` on one clip of ``--seconds`` of noise.

Loads are measured with the fingerprints hashed (``SER_FINGERPRINT_CACHE=off``, as on a package's
first load) and remembered (every later load of an unchanged package; :mod:`ser.io.fingerprints`),
alternating, and the median of ``--repeats`` runs of each is printed with its
ratio to the next clip's time. A package with ONNX systems is also loaded with its weights
repacked for this CPU (``pack_weights=True``, what ``ser.predict`` does on long jobs), remembered.

Usage::

    python bench/startup.py --model PKG [--seconds 3] [--repeats 3]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("import torch", "import ser", "import model code", "load", "first clip", "next clip")


def measure(model, seconds, pack_weights=False):
    """One process's figures: seconds per stage (printed as JSON by ``--one``)."""
    times, began = {}, time.perf_counter()

    def lap(stage):
        nonlocal began
        now = time.perf_counter()
        times[stage], began = now - began, now

    import torch

    lap("import torch")
    from ser.inference.recognizer import EmotionRecognizer

    lap("import ser")
    import_model_code(model)
    lap("import model code")
    recognizer = EmotionRecognizer.from_pretrained(model, pack_weights=pack_weights)
    lap("load")
    clip = torch.randn(int(seconds * 16000)).mul_(0.1)
    recognizer.classify_batch(clip, sample_rate=16000)
    lap("first clip")
    recognizer.classify_batch(clip, sample_rate=16000)
    lap("next clip")
    return times


def package_runtimes(model):
    """The runtimes of the package's systems (``pytorch``, ``onnx``, ``onnx-int8``)."""
    manifest = json.loads((Path(model) / "ser_package.json").read_text(encoding="utf-8"))
    return {entry.get("runtime", "pytorch") for entry in manifest["systems"]}


def import_model_code(model):
    """Import what the package's runtimes run: PyTorch networks' modules, or onnxruntime."""
    import importlib

    runtimes = package_runtimes(model)
    modules = ["ser.inference.onnx_runtime", "onnxruntime"] if runtimes - {"pytorch"} else []
    if "pytorch" in runtimes:  # the modules a packaged system's YAML names
        modules += ["ser.nn.encoders", "ser.nn.model", "ser.nn.pooling"]
    for module in modules:
        importlib.import_module(module)


def run_child(model, seconds, memory, pack_weights=False):
    env = {**os.environ, "SER_FINGERPRINT_CACHE": memory, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, __file__, "--model", str(model), "--seconds", str(seconds), "--one"]
    command += ["--pack_weights"] if pack_weights else []
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"bench/startup.py: the measuring process failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="package folder (python -m ser.export)")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of the clip classified")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--pack_weights", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print("RESULT " + json.dumps(measure(args.model, args.seconds, args.pack_weights)))
        return
    onnx = bool(package_runtimes(args.model) - {"pytorch"})
    with tempfile.TemporaryDirectory() as tmp:
        memory = str(Path(tmp) / "fingerprints.json")
        run_child(args.model, args.seconds, memory)  # fills the memory (and the page cache)
        runs = {"hashed": [], "remembered": []} | ({"packed": []} if onnx else {})
        for _ in range(args.repeats):
            runs["hashed"].append(run_child(args.model, args.seconds, "off"))
            runs["remembered"].append(run_child(args.model, args.seconds, memory))
            if onnx:  # the ONNX weights repacked for this CPU at start-up (ser.predict on long jobs)
                runs["packed"].append(run_child(args.model, args.seconds, memory, pack_weights=True))
    median = {kind: {stage: statistics.median(r[stage] for r in rows) for stage in STAGES}
              for kind, rows in runs.items()}
    clip = statistics.median(r["next clip"] for r in runs["remembered"])
    print(f"{args.model}: median of {args.repeats} fresh processes each; one {args.seconds:g} s clip "
          f"classifies in {clip:.2f} s")
    packed_columns = " | weights packed, s | packed / one clip" if onnx else ""
    print(f"| stage | fingerprints hashed, s | remembered, s | remembered / one clip{packed_columns} |")
    print("|---|---:|---:|---:|" + ("---:|---:|" if onnx else ""))
    for stage in STAGES:
        hashed, remembered = median["hashed"][stage], median["remembered"][stage]
        row = f"| {stage} | {hashed:.2f} | {remembered:.2f} | {remembered / clip:.2f}x |"
        if onnx:
            packed = median["packed"][stage]
            row += f" {packed:.2f} | {packed / clip:.2f}x |"
        print(row)


if __name__ == "__main__":
    main()
