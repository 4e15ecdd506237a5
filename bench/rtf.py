"""Real-time factor and peak memory of inference: PyTorch fp32 vs ONNX fp32 vs ONNX int8, side by side.

The paper's real-size networks, random-init from the published configurations of WavLM-large,
HuBERT-large and RoBERTa-base (``bench/real_size.py`` builds them and each system from its own
``hparams/system_X.yaml``), classify the same clips through the library's predict path
(:class:`ser.inference.recognizer.EmotionRecognizer`), with

- PyTorch fp32 (the default runtime), ONNX fp32 and ONNX int8 (``python -m ser.export --onnx`` /
  ``--int8``, :mod:`ser.inference.onnx_export`);
- 1 thread and all cores;
- one clip per forward pass (batch 1) and the clips sorted by length in batches (``--batch_size``);

and next to them a plain Hugging Face ``pipeline("audio-classification")`` on a
``WavLMForSequenceClassification`` of the same WavLM-large configuration (what a user would
otherwise pick), and Whisper transcription per audio second (faster-whisper int8, beam 5).

Systems B and E have A's and D's networks (they differ in training only), so A, C and D are
measured and the ensemble A-E is 2 A + C + 2 D + one Whisper (D and E share the transcripts) + the
fusion (an SVM on 40 numbers per turn: microseconds, not measured here; ``bench/fusion.py``).
Text systems get fixed 12-word transcripts here (Whisper is timed on its own row).

Each (system, runtime, threads) runs in its own process, so each peak RSS is its own and the ONNX
rows never hold the PyTorch weights. The real-time factor (RTF) is compute seconds per second of
audio: below 1 is faster than real time. Random-init weights compute what trained ones compute:
the timings hold; label agreement on random-init networks (near-uniform posteriors) says little,
``python -m ser.export --int8`` checks it on the trained systems.

Usage::

    python bench/rtf.py                      # real size, 6 clips of 1.5-6 s, 1 and all threads
    python bench/rtf.py --clips 8 --longest 12 --systems a
    python bench/rtf.py --gpu                # PyTorch rows on the GPU (onnxruntime stays on CPU)
    python bench/rtf.py --smoke              # the demo's tiny encoders, 2 short clips (the test)

Whisper large-v3 cannot be measured here: CTranslate2 needs its weights (no random init) and
nothing is downloaded; the Whisper row is the bundled tiny.en (``ser.asr.bundled_tiny_en_path``).
"""

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.real_size import build_models, load_system  # noqa: E402
from ser.inference.onnx_export import export_onnx_model  # noqa: E402
from ser.inference.onnx_parity import synthetic_clips  # noqa: E402

SAMPLE_RATE = 16000
RUNTIMES = ("pytorch", "onnx", "onnx-int8")
TRANSCRIPT = "well i really think that it was not what we wanted at all you know"
#: What one system of each architecture stands for in the ensemble A-E (B = A, E = D).
ENSEMBLE = {"a": 2, "c": 1, "d": 2}


class FixedTranscripts:
    """The same transcript for every clip: the text systems' input without timing Whisper twice."""

    def transcribe_many(self, audios, batch_size):
        return [TRANSCRIPT for _ in audios]


def _rss_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _clips(args):
    return synthetic_clips(args.clips, args.shortest, args.longest, seed=1)


def _build_model(system, work, args):
    """The system's network (its YAML, real-size or the demo's tiny encoders), eval mode."""
    torch.manual_seed(0)
    models = build_models(work / "models") if args.size == "real" else None
    options = SimpleNamespace(batch_size=2, seconds=2.0)
    return load_system(system, work / f"system_{system}", models, options)["model"].eval()


def _time(recognizer, clips, batch_size, device):
    recognizer.batch_size = batch_size
    began = time.perf_counter()
    recognizer.classify_batch(clips, sample_rate=SAMPLE_RATE)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - began


def run_one(system, runtime, threads, work, args):
    """Load one system in one runtime, classify the clips at batch 1 and batched; a dict of figures."""
    from ser.emotions import EMOTIONS
    from ser.inference.loading import LoadedSystem
    from ser.inference.onnx_runtime import OnnxEmotionModel
    from ser.inference.recognizer import EmotionRecognizer
    from ser.targets import Targets

    torch.set_num_threads(threads)
    device = "cuda" if args.gpu and runtime == "pytorch" else "cpu"
    began = time.perf_counter()
    if runtime == "pytorch":
        model = _build_model(system, work, args).to(device)
    else:
        folder = work / "onnx" / f"{system}_{runtime}"
        spec = json.loads((folder / "graphs.json").read_text())
        # A branch the export left in PyTorch (the demo's Whisper encoder) needs the PyTorch network.
        hybrid = any(row.get("pytorch") for row in spec["speech"] + spec["text"])
        pytorch_model = _build_model(system, work, args) if hybrid else None
        model = OnnxEmotionModel(folder, pytorch_model, threads=threads, pack_weights=True)
    load_s = time.perf_counter() - began
    whisper = "fixed transcripts" if model.uses_text else None
    loaded = LoadedSystem(system, work, model, None, whisper, Targets(classes=EMOTIONS))
    recognizer = EmotionRecognizer([loaded], {whisper: FixedTranscripts()} if whisper else {}, device=device)
    clips = _clips(args)
    audio_s = sum(len(c) for c in clips) / SAMPLE_RATE
    with torch.inference_mode():
        _time(recognizer, clips[:1], 1, device)  # warm-up: first-run allocations, kernels
        one = _time(recognizer, clips, 1, device)
        batched = _time(recognizer, clips, args.batch_size, device)
    gpu_gb = torch.cuda.max_memory_allocated() / 1e9 if device.startswith("cuda") else None
    return {"system": system, "runtime": runtime, "threads": threads, "device": device, "load_s": load_s,
            "audio_s": audio_s, "rtf_batch1": one / audio_s, "rtf_batched": batched / audio_s,
            "peak_rss_gb": _rss_gb(), "peak_gpu_gb": gpu_gb}


def run_hf_pipeline(threads, work, args):
    """``pipeline("audio-classification")`` on WavLM-large's configuration (random init), same clips."""
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModelForAudioClassification, pipeline

    torch.set_num_threads(threads)
    models = build_models(work / "models") if args.size == "real" else None
    source = models["wavlm"] if models else _tiny_wavlm(work)
    began = time.perf_counter()
    config = AutoConfig.from_pretrained(source, num_labels=8)
    torch.manual_seed(0)
    model = AutoModelForAudioClassification.from_config(config).eval()
    classifier = pipeline("audio-classification", model=model,
                          feature_extractor=AutoFeatureExtractor.from_pretrained(source), device=-1)
    load_s = time.perf_counter() - began
    clips = [c.numpy() for c in _clips(args)]
    audio_s = sum(len(c) for c in clips) / SAMPLE_RATE
    classifier(clips[:1])
    times = {}
    for name, batch_size in (("rtf_batch1", 1), ("rtf_batched", args.batch_size)):
        began = time.perf_counter()
        classifier(clips, batch_size=batch_size, top_k=8)
        times[name] = (time.perf_counter() - began) / audio_s
    name = "HF pipeline (WavLM-large)" if args.size == "real" else "HF pipeline (tiny WavLM)"
    return {"system": name, "runtime": "pytorch", "threads": threads, "device": "cpu",
            "load_s": load_s, "audio_s": audio_s, **times, "peak_rss_gb": _rss_gb(), "peak_gpu_gb": None}


def _tiny_wavlm(work):
    from ser.nn.tiny_models import build_tiny_models

    return build_tiny_models(work / "tiny_models")["wavlm"]


def run_whisper(threads, args):
    """faster-whisper tiny.en int8, beam 5: transcription seconds per audio second."""
    from faster_whisper import WhisperModel

    from ser.asr import bundled_tiny_en_path

    began = time.perf_counter()
    model = WhisperModel(str(bundled_tiny_en_path()), device="cpu", compute_type="int8", cpu_threads=threads)
    load_s = time.perf_counter() - began
    clips = [c.numpy() for c in _clips(args)]
    audio_s = sum(len(c) for c in clips) / SAMPLE_RATE
    began = time.perf_counter()
    for clip in clips:
        list(model.transcribe(clip, beam_size=5, language="en")[0])
    rtf = (time.perf_counter() - began) / audio_s
    return {"system": "Whisper tiny.en (CT2 int8, beam 5)", "runtime": "ctranslate2", "threads": threads,
            "device": "cpu", "load_s": load_s, "audio_s": audio_s, "rtf_batch1": rtf, "rtf_batched": None,
            "peak_rss_gb": _rss_gb(), "peak_gpu_gb": None}


def export_graphs(system, work, args):
    """Both ONNX runtimes' graphs of one system (once per work folder); seconds each took."""
    model = _build_model(system, work, args)
    seconds = {}
    for runtime in RUNTIMES[1:]:
        folder = work / "onnx" / f"{system}_{runtime}"
        if not (folder / "graphs.json").is_file():
            began = time.perf_counter()
            export_onnx_model(model, folder, int8=runtime == "onnx-int8")
            seconds[runtime] = time.perf_counter() - began
    return seconds


def _child(args, work, *what):
    command = [sys.executable, __file__, "--work", str(work), "--size", args.size, "--clips", str(args.clips),
               "--shortest", str(args.shortest), "--longest", str(args.longest),
               "--batch_size", str(args.batch_size), *(["--gpu"] if args.gpu else []), "--one", *what]
    env = {**os.environ, "OMP_NUM_THREADS": what[-1] if what[0] != "export" else str(os.cpu_count())}
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise SystemExit(f"{' '.join(what)}: exit {done.returncode}\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def matmul_rate(rows, threads, inner=1024, outer=4096, seconds=1.0):
    """GFLOP/s of one of WavLM-large's feed-forward matrix products (``rows`` frames) on this CPU."""
    torch.set_num_threads(threads)
    weight, frames = torch.randn(outer, inner), torch.randn(rows, inner)
    with torch.inference_mode():
        torch.nn.functional.linear(frames, weight)
        count, began = 0, time.perf_counter()
        while time.perf_counter() - began < seconds:
            torch.nn.functional.linear(frames, weight)
            count += 1
    return 2 * rows * inner * outer * count / (time.perf_counter() - began) / 1e9


def print_batching_ceiling(args):
    """What batching can gain on this CPU at most: matrix-product throughput, one clip vs a batch.

    Most of a real-size encoder's time goes to matrix products with one row per frame (50 per
    second of audio). On a CPU they are near their peak already with one clip's rows, so a batch
    only adds the gain of a taller matrix; a GPU, far from its peak with one clip, gains more.
    """
    clip_rows = int((args.shortest + args.longest) / 2 * 50)
    print(f"\nBatching ceiling, WavLM-large's 1024x4096 matrix product on this CPU ({clip_rows} rows = one "
          f"{clip_rows / 50:g} s clip; x{args.batch_size} = a batch):")
    for threads in args.threads:
        one, batch = matmul_rate(clip_rows, threads), matmul_rate(clip_rows * args.batch_size, threads)
        print(f"  {threads} thread(s): {one:.0f} GFLOP/s one clip, {batch:.0f} batched: the products can "
              f"run at most {batch / one:.2f}x faster in batches")


def _fmt(value, digits=3):
    return "-" if value is None else f"{value:.{digits}f}"


def print_tables(rows, args, exports):
    flags = sorted({f for line in open("/proc/cpuinfo") for f in line.split() if f.startswith("avx")})
    print(f"\nCPU: {os.cpu_count()} cores, flags {' '.join(flags)}; torch {torch.__version__}; "
          f"{args.clips} clips of {args.shortest:g}-{args.longest:g} s "
          f"({rows[0]['audio_s']:.1f} s of audio); "
          f"batched = {args.batch_size} clips per pass, sorted by length; size {args.size}")
    if exports:
        print("ONNX export seconds: " + ", ".join(f"{s} {r} {v:.0f}" for (s, r), v in exports.items()))
    print("\n| system | runtime | threads | load s | RTF batch 1 | RTF batched | batched speed-up | "
          "speed-up vs PyTorch fp32 (batched) | peak RSS GB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    base = {(r["system"], r["threads"]): r["rtf_batched"] for r in rows if r["runtime"] == "pytorch"}
    for r in rows:
        speedup = r["rtf_batch1"] / r["rtf_batched"] if r["rtf_batched"] else None
        ref = base.get((r["system"], r["threads"]))
        versus = ref / r["rtf_batched"] if ref and r["rtf_batched"] else None
        name = r["system"].upper() if len(r["system"]) == 1 else r["system"]
        gpu = f" (GPU {r['peak_gpu_gb']:.1f} GB)" if r["peak_gpu_gb"] else ""
        runtime = r["runtime"] + (f" {r['device']}" if r["device"] != "cpu" else "")
        print(f"| {name} | {runtime} | {r['threads']} | "
              f"{r['load_s']:.1f} | {_fmt(r['rtf_batch1'])} | {_fmt(r['rtf_batched'])} | "
              f"{_fmt(speedup, 2)}x | {_fmt(versus, 2)}x | {r['peak_rss_gb']:.2f}{gpu} |")
    whisper = [r for r in rows if r["runtime"] == "ctranslate2"]
    if set(ENSEMBLE) - {r["system"] for r in rows}:
        print(f"\n(The ensemble's table needs systems {' '.join(sorted(ENSEMBLE))}: --systems a c d.)")
        return
    print("\nEnsemble A-E + fusion (2 A + C + 2 D + one Whisper tiny.en; B = A, E = D), batched:")
    print("| runtime | threads | RTF networks | RTF with Whisper | 1 h of audio | peak RSS GB, all loaded "
          "(estimate: sum of the systems' peaks) |")
    print("|---|---:|---:|---:|---:|---:|")
    for runtime in RUNTIMES:
        for threads in args.threads:
            by_system = {r["system"]: r for r in rows if r["runtime"] == runtime and r["threads"] == threads}
            if set(ENSEMBLE) - set(by_system):
                continue
            rtf = sum(n * by_system[s]["rtf_batched"] for s, n in ENSEMBLE.items())
            asr = next((w["rtf_batch1"] for w in whisper if w["threads"] == threads), 0.0)
            memory = sum(n * by_system[s]["peak_rss_gb"] for s, n in ENSEMBLE.items())
            hours = (rtf + asr) * 3600
            print(f"| {runtime} | {threads} | {rtf:.3f} | {rtf + asr:.3f} | {hours / 60:.1f} min | "
                  f"~{memory:.1f} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--systems", nargs="+", default=["a", "c", "d"], choices=["a", "c", "d"],
                        help="architectures to measure (B = A, E = D)")
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--shortest", type=float, default=1.5, help="seconds")
    parser.add_argument("--longest", type=float, default=6.0, help="seconds")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--threads", type=int, nargs="+", default=sorted({1, os.cpu_count() or 1}))
    parser.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=RUNTIMES)
    parser.add_argument("--size", choices=["real", "tiny"], default="real")
    parser.add_argument("--gpu", action="store_true", help="PyTorch rows on the GPU")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny encoders, 2 short clips, 1 thread, A and D")
    parser.add_argument("--no_baselines", action="store_true", help="skip the HF pipeline and Whisper rows")
    parser.add_argument("--work", help="folder for models and graphs (default: a temporary one)")
    parser.add_argument("--one", nargs="+", help=argparse.SUPPRESS)  # internal: one measurement, JSON
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.smoke:
        args.size, args.clips, args.shortest, args.longest = "tiny", 2, 0.5, 1.0
        args.threads, args.systems = [1], ["a", "d"]
    if args.gpu and not torch.cuda.is_available():
        raise SystemExit("bench/rtf.py: --gpu, but torch sees no GPU")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        if args.one:
            kind, *rest = args.one
            if kind == "export":
                result = export_graphs(rest[0], work, args)
            elif kind == "hf":
                result = run_hf_pipeline(int(rest[0]), work, args)
            elif kind == "whisper":
                result = run_whisper(int(rest[0]), args)
            else:
                result = run_one(kind, rest[0], int(rest[1]), work, args)
            print("RESULT " + json.dumps(result))
            return
        exports, rows = {}, []
        for system in args.systems:
            if set(args.runtimes) - {"pytorch"}:
                for runtime, seconds in _child(args, work, "export", system).items():
                    exports[(system.upper(), runtime)] = seconds
            for runtime in args.runtimes:
                for threads in args.threads:
                    rows.append(_child(args, work, system, runtime, str(threads)))
                    print(json.dumps(rows[-1]), flush=True)
        if not args.no_baselines:
            for threads in args.threads:
                rows.append(_child(args, work, "hf", str(threads)))
                rows.append(_child(args, work, "whisper", str(threads)))
                print(json.dumps(rows[-2]), json.dumps(rows[-1]), flush=True)
        print_tables(rows, args, exports)
        if not args.gpu:
            print_batching_ceiling(args)


if __name__ == "__main__":
    main()
