"""The GPU checks in one run (``bash bench/gpu.sh``): under 8 minutes on one CUDA GPU.

Prints, section by section (each section's own table, then its wall time):

1. training throughput of system A with a WavLM-large-sized encoder (random init, built locally):
   utterances/s for fp32 + random batches vs bf16 + length-bucketed batches, and the other
   combinations (``bench/train_step.py``; target >= 2x);
2. peak GPU memory of one training epoch of systems A, C and D (WavLM-large-sized encoders, 12 s
   turns, each system's default batch of ``batch_size`` turns, fp32), next to ``bench/memory.py``'s
   estimate for the same batch;
3. Whisper tiny.en on the GPU: batched vs one turn per call (``bench/transcribe.py``; target
   >= 4x);
4. ``ser.predict`` files/s with systems A and D trained for this run (``train.py --debug`` on a
   generated mini corpus) (``bench/predict.py``).

``--smoke`` runs every section on the CPU with tiny sizes (the demo's tiny encoders, a few turns):
the suite runs it (tests/test_bench_gpu.py) so the script works the day a GPU is lent.

Usage::

    bash bench/gpu.sh                 # on a machine with one CUDA GPU
    bash bench/gpu.sh --smoke         # anywhere, in about a minute
    bash bench/gpu.sh --sections 1 2  # training speed and memory only (no mini corpus, no Whisper)
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.memory import WAVLM_LARGE, training_memory_estimate  # noqa: E402
from bench.padding import yaml_scalars  # noqa: E402
from bench.train_step import load_system, timed_epoch, write_synthetic_corpus  # noqa: E402
from ser.console import chatter_to_log  # noqa: E402

MEMORY_SYSTEMS = {  # system: (YAML, speech encoders, CNN frozen) as bench/memory.py counts them
    "A": ("hparams/system_a.yaml", 1, False),
    "C": ("hparams/system_c.yaml", 2, False),
    "D": ("hparams/system_d.yaml", 1, True),
}


def settings(smoke):
    """Sizes of each section: the real check on a GPU, or a CPU smoke run."""
    if smoke:
        return {
            "device": "cpu",
            "model_size": "tiny",
            "train_turns": 8,
            "turn_seconds": 2.0,
            "batch_scale": 2.0 / 12.0,
            "whisper_turns": 4,
            "whisper_beams": ["1"],
            "compute_type": "int8",
            "predict_files": 4,
            "predict_systems": ["a"],
            "corpus_turns": 48,
        }
    return {
        "device": "cuda",
        "model_size": "large",
        "train_turns": 256,
        "turn_seconds": 12.0,
        "batch_scale": 1.0,
        "whisper_turns": 120,
        "whisper_beams": ["5", "1"],
        "compute_type": "float16",
        "predict_files": 40,
        "predict_systems": ["a", "d"],
        "corpus_turns": 160,
    }


LOG = {"file": None}  # the run's log file: the scripts' stderr (library messages) goes there


def run(command, stdout=None):
    """Run a Python script of the repository: its stdout (the figures) to ours, its stderr to the log."""
    # The repository first, then what the caller had on the path (packages installed beside the image).
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with open(LOG["file"], "a") as log:
        log.write(f"\n$ python {' '.join(map(str, command))}\n")
        log.flush()
        done = subprocess.run(
            [sys.executable, *map(str, command)], cwd=ROOT, env=env, stdout=stdout, stderr=log
        )
    if done.returncode != 0:
        tail = Path(LOG["file"]).read_text()[-3000:]
        raise SystemExit(
            f"{tail}\nbench/gpu.py: {command[0]} failed (exit {done.returncode}); log: {LOG['file']}"
        )


def section(title):
    print(f"\n## {title}", flush=True)
    return time.perf_counter()


def training_throughput(config, models):
    run(
        [
            "bench/train_step.py",
            "--device",
            config["device"],
            "--model-size",
            config["model_size"],
            "--turns",
            config["train_turns"],
            "--repeats",
            "1",
            "--batching",  # the issue's pair: random (the authors' recipe) vs bucketed (the default)
            "random",
            "bucketed",
            "--num_workers",
            "0" if config["device"] == "cpu" else "8",
            "--models_folder",
            models,
        ]
    )


def peak_memory(config, models, work):
    """One epoch of each system on turns of one length, at its default batch (batch_size turns, bucketed)."""
    device, seconds = config["device"], config["turn_seconds"]
    on_gpu = device.startswith("cuda")
    print(
        f"turns of {seconds:g} s, fp32, bucketed batches of the system's batch_size"
        + ("" if config["batch_scale"] == 1 else f" x {config['batch_scale']:.3f} (smoke)")
    )
    measured = "measured peak GPU GB" if on_gpu else "measured peak RSS GB"
    print(
        f"| system | audio per batch s | turns per batch | {measured} "
        "| estimate GB (bench/memory.py) | measured / estimate |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, (yaml_file, n_encoders, frozen_cnn) in MEMORY_SYSTEMS.items():
        # The default batch: batch_size turns (the paper's), here all of the same length.
        per_batch = int(yaml_scalars(yaml_file, ["batch_size"])["batch_size"])
        per_batch = max(1, round(per_batch * config["batch_scale"]))
        batch_seconds = per_batch * seconds
        folder = work / f"memory_{name}"
        manifest = write_synthetic_corpus(folder, np.full(2 * per_batch, seconds), seed=1)
        entries = json.loads(manifest.read_text())
        for entry in entries.values():  # text systems read a transcript
            entry["transcript"] = "well I do not know what you mean"
        manifest.write_text(json.dumps(entries))
        options = argparse.Namespace(
            hparams=yaml_file,
            models_folder=models,
            max_duration=seconds,
            batch_size=per_batch,
            num_workers=0,
            max_batch_duration=batch_seconds,
            model_size=config["model_size"],
        )
        hparams = load_system(options, folder)
        from ser.training.datasets import make_dataset

        dataset = make_dataset(
            manifest, train=True, max_duration=seconds, with_text=hparams["model"].uses_text
        )
        _, _, peak = timed_epoch(hparams, dataset, "bucketed", "fp32", device)
        model = hparams["modules"]["model"]
        trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
        extra = max(trained - n_encoders * WAVLM_LARGE["params"], 0) if config["model_size"] == "large" else 0
        estimate = (
            training_memory_estimate(
                per_batch * seconds,
                longest_turn_s=seconds,
                n_encoders=n_encoders,
                frozen_cnn=frozen_cnn,
                extra_params=extra,
            )["total"]
            / 1e9
        )
        print(
            f"| {name} | {batch_seconds:g} | {per_batch} | {peak:.2f} | {estimate:.2f} "
            f"| {peak / estimate:.2f} |"
        )
        del hparams, model
        if on_gpu:
            torch.cuda.empty_cache()
    if not on_gpu:
        print(
            "(CPU smoke run: the RSS is the whole process's and the estimate is WavLM-large's: "
            "the ratio means nothing here)"
        )


def quietly(function, *args):
    """Run ``function`` in this process with the libraries' messages sent to the log."""
    with chatter_to_log(LOG["file"], mode="a"):
        return function(*args)


def whisper_batching(config, corpus):
    run(
        [
            "bench/transcribe.py",
            "--corpus",
            corpus,
            "--turns",
            config["whisper_turns"],
            "--beams",
            *config["whisper_beams"],
            "--device",
            config["device"],
            "--compute_type",
            config["compute_type"],
        ]
    )


def predict_throughput(config, corpus, models, work, systems=None):
    if not systems:
        results = work / "systems"
        for system in config["predict_systems"]:
            print(f"training system {system.upper()} (train.py --debug) ...", flush=True)
            with open(LOG["file"], "a") as log:  # train.py's epoch lines are not figures
                run(
                    [
                        "train.py",
                        f"hparams/system_{system}.yaml",
                        "--profile",
                        "hparams/profiles/demo.yaml",
                        f"--data_folder={corpus}",
                        f"--results_folder={results}",
                        f"--tiny_models_folder={models}",
                        "--debug",
                        "--debug_persistently",
                        f"--device={config['device']}",
                    ],
                    stdout=log,
                )
        systems = [results / f"system_{system}" / "1993" for system in config["predict_systems"]]
    run(
        [
            "bench/predict.py",
            "--data_folder",
            corpus,
            "--files",
            config["predict_files"],
            "--fusion",
            "",
            "--device",
            config["device"],
            "--systems",
            *systems,
        ]
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (the suite runs it)")
    parser.add_argument("--corpus", help="an existing mini corpus (default: generate one)")
    parser.add_argument("--models_folder", help="tiny demo models (default: built in a temporary folder)")
    parser.add_argument(
        "--systems",
        nargs="+",
        help="trained system folders for section 4 (default: train A and D with train.py --debug)",
    )
    parser.add_argument("--sections", nargs="+", type=int, choices=[1, 2, 3, 4], default=[1, 2, 3, 4],
                        help="which sections to run (1 and 2 need none of the demo's bundled models)")
    parser.add_argument("--log", default="results/bench_gpu.log", help="the libraries' messages")
    args = parser.parse_args(argv)
    config = settings(args.smoke)
    if config["device"] == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA GPU here: run it on a GPU machine, or --smoke for the CPU check")
    LOG["file"] = Path(args.log).absolute()
    LOG["file"].parent.mkdir(parents=True, exist_ok=True)
    LOG["file"].write_text("")
    began = time.perf_counter()
    device = torch.cuda.get_device_name(0) if config["device"] == "cuda" else "CPU (smoke run)"
    print(f"# bench/gpu.py on {device}; torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        models = Path(args.models_folder) if args.models_folder else work / "models"
        corpus = Path(args.corpus) if args.corpus else None
        if corpus is None and {3, 4} & set(args.sections):
            from data_prep.mini_corpus import generate_mini_corpus

            corpus = work / "corpus"
            generate_mini_corpus(corpus, seed=0, n_turns=config["corpus_turns"])
        steps = [
            (
                "1. training step, system A: fp32 + random batches vs bf16 + bucketed (target >= 2x)",
                lambda: training_throughput(config, models),
            ),
            (
                "2. peak memory at the default batch, systems A, C, D vs bench/memory.py's estimate",
                lambda: quietly(peak_memory, config, models, work),
            ),
            (
                "3. Whisper tiny.en: batched vs one turn per call (target >= 4x on a GPU)",
                lambda: whisper_batching(config, corpus),
            ),
            (
                "4. ser.predict files/s",
                lambda: predict_throughput(config, corpus, models, work, args.systems),
            ),
        ]
        for number, (title, step) in enumerate(steps, start=1):
            if number not in args.sections:
                continue
            start = section(title)
            step()
            print(f"({time.perf_counter() - start:.0f} s)", flush=True)
    print(
        f"\nbench/gpu.py done in {time.perf_counter() - began:.0f} s; the libraries' messages: {LOG['file']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
