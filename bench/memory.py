"""Peak memory: measured on the demo models, estimated for WavLM-large on an 80 GB GPU.

Measured: the peak resident memory (``ru_maxrss`` of the child process, from
``os.wait4``) of a short ``train.py`` run of system A with the demo profile
and of ``python -m ser.predict`` with the system it trained, on the mini
corpus (``make demo`` builds it; ``--data_folder`` otherwise).

Estimated (no GPU here — the figures are computed, not measured): fine-tuning
WavLM-large (317 M parameters, 7 CNN layers of 512 channels at 3200 ... 50
frames/s, 24 transformer layers, d = 1024, 16 heads, FFN 4096, 50 frames/s)
on a batch of ``D`` seconds of padded audio whose turns last ``T`` s needs::

    static      = P * (4 weights + 4 grads + 8 Adam moments) [+ 2 bf16 weight copy]  bytes
    activations = D * (cnn + 24 * (50 * lin * d + quad * heads * 2500 * T))          bytes

- ``lin`` bytes kept per frame and hidden unit of one transformer layer for the
  backward pass: 66 in fp32 (Korthikanti et al. 2022 count 34 in 16-bit: QKV
  and projection inputs, Q, K, V, FFN input, 4d FFN pre- and post-GELU, two
  layer norms, 1-byte dropout masks; fp32 doubles all but the masks), 38 with
  bf16 autocast (layer norms stay fp32);
- ``quad`` bytes per head and pair of frames of one turn (attention grows with
  T^2 per turn, so with T per second of batch): fp32 13 = WavLM's gated
  relative position bias 4 + softmax 4 + dropout mask 1 + dropout output 4;
  bf16 15 (softmax stays fp32, plus a bf16 copy for the product with V);
- ``cnn`` = 3 tensors (conv, layer norm, GELU) x 512 channels x 6350 frames/s
  (sum over the 7 layers) x 4 bytes (fp32) or 2+4+4 (bf16); 0 when frozen.

Usable memory is 90 % of the GPU (CUDA context, cuDNN workspaces, allocator
fragmentation). The worst case is T = ``max_duration`` = 12 s.

Usage::

    python bench/memory.py [--data_folder data/mini_corpus] [--gpu_gb 80] [--skip_measure]
"""

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
logger = logging.getLogger(__name__)

WAVLM_LARGE = {"params": 317e6, "layers": 24, "d": 1024, "heads": 16, "frames_per_s": 50}
CNN_FRAMES_PER_S = sum(16000 // stride for stride in (5, 10, 20, 40, 80, 160, 320))  # 6350
BYTES = {
    "fp32": {"lin": 66, "quad": 13, "cnn": 3 * 4, "weights": 16},
    "bf16": {"lin": 38, "quad": 15, "cnn": 2 + 4 + 4, "weights": 16 + 2},
}
USABLE_FRACTION = 0.9


def training_memory_estimate(
    batch_seconds, longest_turn_s=12.0, precision="fp32", n_encoders=1, frozen_cnn=False, extra_params=0
):
    """Estimated GPU bytes to fine-tune WavLM-large-sized encoder(s) on one batch (see module doc).

    Parameters
    ----------
    batch_seconds : float
        Padded audio in the batch (batch size x longest turn).
    longest_turn_s : float
        Length of the turns (the attention term grows with it).
    precision : {"fp32", "bf16"}
        Weights and Adam stay fp32; bf16 means autocast activations.
    n_encoders : int
        Speech encoders run jointly (system C: WavLM + HuBERT, both large).
    frozen_cnn : bool
        CNN feature extractor frozen (systems D, E): it keeps no activations.
    extra_params : float
        Other trained parameters (e.g. RoBERTa-base, 125e6); their activations are neglected.

    Returns
    -------
    dict
        ``static``, ``activations`` and ``total`` in bytes.

    Example
    -------
    >>> estimate = training_memory_estimate(192.0)
    >>> round(estimate["static"] / 1e9, 1), round(estimate["total"] / 1e9)
    (5.1, 57)
    """
    geometry, costs = WAVLM_LARGE, BYTES[precision]
    per_layer = geometry["frames_per_s"] * costs["lin"] * geometry["d"]
    per_layer += costs["quad"] * geometry["heads"] * geometry["frames_per_s"] ** 2 * longest_turn_s
    cnn = 0 if frozen_cnn else costs["cnn"] * 512 * CNN_FRAMES_PER_S
    per_second = n_encoders * (cnn + geometry["layers"] * per_layer)
    static = (n_encoders * geometry["params"] + extra_params) * costs["weights"]
    activations = batch_seconds * per_second
    return {"static": static, "activations": activations, "total": static + activations}


def largest_batch_duration(gpu_gb=80.0, **options):
    """Largest ``max_batch_duration`` (s) whose estimate fits ``USABLE_FRACTION`` of the GPU.

    Example
    -------
    >>> round(largest_batch_duration(80.0))
    248
    """
    usable = USABLE_FRACTION * gpu_gb * 1e9
    one_second = training_memory_estimate(1.0, **options)
    return (usable - one_second["static"]) / one_second["activations"]


def peak_rss_mb(command, env=None):
    """Run ``command``; return (exit code, wall seconds, peak resident MB of the child and its children)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, command))} failed:\n{stderr.decode()[-3000:]}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024  # Linux: KiB


def measure_demo(data_folder, models_folder, epochs):
    """Peak RSS (MB) of a demo training run of system A and of ser.predict with it."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as results:
        train = [
            sys.executable,
            "train.py",
            "hparams/system_a.yaml",
            "--profile",
            "hparams/profiles/demo.yaml",
            f"--data_folder={data_folder}",
            f"--results_folder={results}",
            f"--tiny_models_folder={models_folder}",
            f"--number_of_epochs={epochs}",
        ]
        train_s, train_mb = peak_rss_mb(train, env)
        system = Path(results) / "system_a" / "1993"
        wavs = sorted((Path(data_folder) / "Audios").glob("*.wav"))[:20]
        predict = [
            sys.executable,
            "-m",
            "ser.predict",
            *map(str, wavs),
            "--systems",
            str(system),
            "--out",
            str(Path(results) / "predictions.csv"),
            "--no_progress",
        ]
        predict_s, predict_mb = peak_rss_mb(predict, env)
    return [
        (f"train.py system A, demo profile, {epochs} epochs", train_s, train_mb),
        (f"ser.predict, system A demo model, {len(wavs)} files", predict_s, predict_mb),
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_folder", default="data/mini_corpus", help="mini corpus (make demo builds it)")
    parser.add_argument(
        "--models_folder", default="results/demo/models", help="tiny models (built if absent)"
    )
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the measured training run")
    parser.add_argument("--gpu_gb", type=float, default=80.0, help="GPU memory for the estimate")
    parser.add_argument("--skip_measure", action="store_true", help="print the estimate only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("speechbrain").setLevel(logging.WARNING)

    if not args.skip_measure:
        rows = measure_demo(Path(args.data_folder).resolve(), Path(args.models_folder).resolve(), args.epochs)
        print("Measured peak resident memory (CPU, demo models):")
        print("| run | wall s | peak RSS MB |")
        print("|---|---:|---:|")
        for name, seconds, megabytes in rows:
            print(f"| {name} | {seconds:.1f} | {megabytes:.0f} |")
        print()

    print(
        f"ESTIMATE (computed, not measured; formula in bench/memory.py) for a {args.gpu_gb:g} GB GPU, "
        f"{100 * USABLE_FRACTION:.0f} % usable, turns of 12 s:"
    )
    print(
        "| encoders trained | precision | static GB | GB per s of batch | GB at 192 s "
        "| largest max_batch_duration s |"
    )
    print("|---|---|---:|---:|---:|---:|")
    setups = [
        ("WavLM-large (A, B)", {}),
        ("WavLM-large + HuBERT-large (C)", {"n_encoders": 2}),
        ("WavLM-large, CNN frozen, + RoBERTa-base (D, E)", {"frozen_cnn": True, "extra_params": 125e6}),
    ]
    for name, options in setups:
        for precision in ("fp32", "bf16"):
            one = training_memory_estimate(1.0, precision=precision, **options)
            at_192 = training_memory_estimate(192.0, precision=precision, **options)["total"]
            largest = largest_batch_duration(args.gpu_gb, precision=precision, **options)
            print(
                f"| {name} | {precision} | {one['static'] / 1e9:.1f} | {one['activations'] / 1e9:.3f} | "
                f"{at_192 / 1e9:.0f} | {largest:.0f} |"
            )


if __name__ == "__main__":
    main()
