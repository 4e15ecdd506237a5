"""Throughput of ``ser.predict`` with the five sub-systems and their fusion, and where its time goes.

Loads the systems once (as ``python -m ser.predict`` does), classifies ``--files`` Test3 turns of
the mini corpus, and prints files per second and the share of the time spent in each stage. The
stages are timed around the real calls, from outside the library:

- *read audio*: ``ser.io.audio.load_waveform`` (decode, mix down, resample);
- *ASR*: each Whisper backend's ``transcribe_many``;
- *speech encoders* / *text encoders*: forward hooks on every ``SpeechBranch`` / ``TextBranch``
  (encoder + pooling; the text branch includes tokenisation);
- *fusion*: the fused model's ``predict_proba``;
- *other*: the rest (batching, padding, the linear heads, bookkeeping).

Usage (defaults: the ``make demo`` outputs)::

    python bench/predict.py [--files 40] [--data_folder data/mini_corpus] \\
        [--systems results/demo/system_{a,b,c,d,e}/1993] [--fusion results/demo/fusion] \\
        [--batch_size 8] [--per_file] [--device cuda]

``--per_file`` classifies the files one call each (the reference the batched path must equal):
it also prints the largest difference between the two ways' fused probabilities.
Time it inside ``flock /tmp/cpu.lock`` on a shared machine.
"""

import argparse
import logging
import os
import sys
import time
from collections import defaultdict
from functools import wraps
from pathlib import Path

import numpy as np
import torch

import ser.inference.recognizer
from data_prep.corpora import open_corpus
from ser.emotions import EMOTIONS
from ser.inference.recognizer import EmotionRecognizer
from ser.nn.model import SpeechBranch, TextBranch

DEMO = Path("results/demo")
STAGES = ("read audio", "ASR", "speech encoders", "text encoders", "fusion")


class StageClock:
    """Seconds spent in named stages, collected by wrappers and module hooks."""

    def __init__(self):
        self.seconds = defaultdict(float)
        self.calls = defaultdict(int)

    def wrap(self, function, stage):
        """``function`` with its run time added to ``stage``."""

        @wraps(function)
        def timed(*args, **kwargs):
            began = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - began
                self.calls[stage] += 1

        return timed

    def hook(self, module, stage):
        """Time every forward of ``module`` (CPU ops are synchronous, so wall time is right)."""
        started = []
        module.register_forward_pre_hook(lambda *_: started.append(time.perf_counter()))

        def done(*_):
            self.seconds[stage] += time.perf_counter() - started.pop()
            self.calls[stage] += 1

        module.register_forward_hook(done)

    def reset(self):
        self.seconds.clear()
        self.calls.clear()


def instrument(recognizer, clock):
    """Route the recogniser's stages through ``clock`` (the real calls, only timed)."""
    ser.inference.recognizer.load_waveform = clock.wrap(ser.inference.recognizer.load_waveform, "read audio")
    for backend in recognizer.transcribers.values():
        backend.transcribe_many = clock.wrap(backend.transcribe_many, "ASR")
    for system in recognizer.systems:
        for module in system.model.modules():
            if isinstance(module, SpeechBranch):
                clock.hook(module, "speech encoders")
            elif isinstance(module, TextBranch):
                clock.hook(module, "text encoders")
    if recognizer.fusion is not None:
        recognizer.fusion.predict_proba = clock.wrap(recognizer.fusion.predict_proba, "fusion")


def test3_files(data_folder, count):
    """The first ``count`` Test3 turns (sorted by name) of a corpus."""
    turns = open_corpus(data_folder).turns(["Test3"]).sort_values("FileName")
    if len(turns) < count:
        raise SystemExit(f"{data_folder}: only {len(turns)} Test3 turns, --files asks for {count}")
    return [Path(wav) for wav in turns["wav"][:count]]


def fused_matrix(results):
    """``(n_files, 8)`` fused probabilities of a list of results."""
    return np.array([[r.probabilities[c] for c in EMOTIONS] for r in results])


def print_report(n_files, seconds, clock, load_seconds, title):
    print(
        f"\n{title}: {n_files} files in {seconds:.2f} s = {n_files / seconds:.2f} files/s "
        f"(loading the systems, once: {load_seconds:.1f} s)"
    )
    print(f"{'stage':<18}{'seconds':>9}{'share':>8}{'calls':>7}")
    accounted = 0.0
    for stage in STAGES:
        accounted += clock.seconds[stage]
        print(
            f"{stage:<18}{clock.seconds[stage]:>9.2f}{clock.seconds[stage] / seconds:>8.1%}"
            f"{clock.calls[stage]:>7}"
        )
    other = seconds - accounted
    print(f"{'other':<18}{other:>9.2f}{other / seconds:>8.1%}{'':>7}")


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=40, help="Test3 turns to classify")
    parser.add_argument("--data_folder", default="data/mini_corpus")
    parser.add_argument("--systems", nargs="+", default=[str(DEMO / f"system_{s}" / "1993") for s in "abcde"])
    parser.add_argument("--fusion", default=str(DEMO / "fusion"), help="fusion folder ('' for none)")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--per_file", action="store_true", help="also classify one file per call")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    files = test3_files(args.data_folder, args.files)

    began = time.perf_counter()
    recognizer = EmotionRecognizer.from_folders(
        args.systems, args.fusion or None, device=args.device, batch_size=args.batch_size
    )
    load_seconds = time.perf_counter() - began
    clock = StageClock()
    instrument(recognizer, clock)
    print(
        f"torch threads {torch.get_num_threads()}; systems: {', '.join(s.name for s in recognizer.systems)}"
        f"; Whisper recognisers: {len(recognizer.transcribers)}; fusion: {recognizer.fusion is not None}"
    )

    # One-off costs (first forward of each model, lazy imports) are not throughput.
    recognizer.classify_files(files[:2])
    clock.reset()
    began = time.perf_counter()
    batched = recognizer.classify_files(files)
    seconds = time.perf_counter() - began
    failed = [r.error for r in batched if r.error]
    if failed:
        raise SystemExit(f"{len(failed)} files failed, e.g. {failed[0]}")
    print_report(len(files), seconds, clock, load_seconds, "batched (classify_files on all files)")

    if args.per_file:
        clock.reset()
        began = time.perf_counter()
        single = [recognizer.classify_files([path])[0] for path in files]
        seconds = time.perf_counter() - began
        print_report(len(files), seconds, clock, load_seconds, "one file per call")
        difference = np.abs(fused_matrix(batched) - fused_matrix(single)).max()
        print(f"largest |batched - per-file| fused probability: {difference:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
