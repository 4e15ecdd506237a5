"""The main job on the embedded default: ``make demo`` (``python -m recipes.demo``).

Stages, each reused when already done (re-running the demo costs little):

1. the mini corpus (``data_prep.mini_corpus``) in ``data/mini_corpus``;
2. consensus relabeling (K = 50 %): paper Table 2 for the mini corpus, and how
   many X turns got their true label back;
3. Whisper transcription of every turn with the bundled tiny.en (shared by
   the text systems, cached per utterance), run beside the speech-only
   trainings of stage 4 (so their result lines may come before its own);
4. training of sub-systems A–E (Task 1) and of the attribute systems
   (``hparams/task2_wavlm.yaml``, speech only, and ``hparams/task2_d.yaml``,
   speech + text; Task 2) with the demo profile (``train.py``), each printing
   its dev macro-F1 or CCC (a finished system is not trained again): one pool,
   one training per core side by side (``--jobs``), the text systems (which
   peak early) for :data:`TEXT_SYSTEM_EPOCHS` epochs, once the transcripts
   exist;
5. SVM fusion (speaker-disjoint cross-validation on dev), the Table-1 report,
   the confusion matrix and per-class F1 figures, and ``submission.csv``;
6. Task 2 fusion (a ridge regressor, speaker-disjoint cross-validation) and
   the CCC table;
7. ``ser.predict`` on a few Test3 files with all the systems and the fusion
   (class and attributes), then the model package ``<results>/package`` (``python -m ser.export``:
   the Task 1 systems and their fusion, the Task 2 systems and theirs) and the two commands that
   use it (``ser.predict``, ``ser.app``).

The console shows the stage lines, the progress of the long stages (bars on a terminal only;
piped or redirected output gets the stage lines alone) and the results; the
libraries' messages of each stage (SpeechBrain, transformers, warnings; a system's whole
training output) go to ``<results>/logs/<stage>.log``, named on the stage's line
(:func:`ser.console.chatter_to_log`).
"""

import os
import re
import sys
import time
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from data_prep.consensus import class_count_table, relabel_corpus
from data_prep.corpora import DEFAULT_SPLITS, open_corpus
from data_prep.mini_corpus import generate_mini_corpus, is_up_to_date
from data_prep.mini_corpus.plan import turn_count
from data_prep.transcribe import BUNDLED_MODEL
from data_prep.transcript_cache import read_transcripts_csv
from recipes.job_pool import Job, run_jobs
from recipes.systems import find_systems
from ser.cli import ArgumentParser, exit_with, non_negative_int, positive_int
from ser.console import chatter_to_log
from ser.io.json_files import read_json
from ser.io.system_folder import HPARAMS_FILE
from ser.nn.tiny_models import TINY_HIDDEN_SIZE
from ser.training.overrides import plain_values, top_level_keys

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "hparams" / "profiles" / "demo.yaml"
SEED = 1993  # the seed of the system YAMLs: their output folder is <system>/<seed>


def stage_log(results, name):
    """The log file of one stage: ``<results>/logs/<name>.log``."""
    return results / "logs" / f"{name}.log"


def shown(path):
    """A path as the stage lines show it: relative to the current folder when inside it."""
    path = path.absolute()
    return path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path


def ensure_corpus(folder, seed, turns, results):
    """Generate the mini corpus unless a complete one with this seed and size is there."""
    if is_up_to_date(folder, seed, turns):
        print(f"[1/7] mini corpus: reusing {folder}")
        return
    start = time.perf_counter()
    with chatter_to_log(stage_log(results, "1_corpus")) as log:
        generate_mini_corpus(folder, seed=seed, n_turns=turns)
    print(f"[1/7] mini corpus: {turns} turns in {folder} ({time.perf_counter() - start:.0f} s); "
          f"log: {shown(log)}")


def transcription_job(corpus, results):
    """The Whisper stage as a command (``data_prep.transcribe``), its log, and its turn count.

    It runs beside the speech-only trainings (:func:`run_trainings`), which do not need its
    transcripts; the systems that read them start once it has finished.
    """
    profile = plain_values(PROFILE.read_text())  # the text systems' decoding
    command = [sys.executable, "-m", "data_prep.transcribe", f"--data_folder={corpus}",
               "--splits", *DEFAULT_SPLITS.values(), f"--model={BUNDLED_MODEL}",
               f"--out={results / 'whisper'}", f"--beam_size={int(profile['whisper_beam_size'])}",
               f"--window_seconds={float(profile['whisper_window_seconds'])}", "--no_progress"]
    return command, stage_log(results, "3_whisper")


def report_transcription(corpus, results, seconds, log):
    """Print the Whisper stage's line: turns, time, word accuracy against the spoken text."""
    csv = results / "whisper" / "transcripts.csv"
    whisper = read_transcripts_csv(csv)
    truth = _spoken_sentences(corpus, list(whisper))
    accuracy = sum(_word_accuracy(truth[name], whisper[name]) for name in truth) / max(len(truth), 1)
    tqdm.write(
        f"[3/7] Whisper tiny.en: {len(whisper)} turns in {shown(csv)} ({seconds:.0f} s, beside the "
        f"speech systems); word accuracy vs. the spoken text {accuracy:.1%}; log: {shown(log)}"
    )


def _spoken_sentences(corpus, names):
    texts = {}
    for name in names:
        path = corpus / "Transcripts" / (Path(name).stem + ".txt")
        if path.is_file():
            texts[name] = path.read_text().strip()
    return texts


def _word_accuracy(reference, hypothesis):
    """1 - word error rate, floored at 0 (edit distance over words)."""
    ref = [w.strip(".,!?;:").lower() for w in reference.split()]
    hyp = [w.strip(".,!?;:").lower() for w in hypothesis.split()]
    previous = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, 1):
        current = [i]
        for j, other in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word != other)))
        previous = current
    return max(0.0, 1.0 - previous[-1] / max(len(ref), 1))


def relabeling_summary(corpus, results):
    with chatter_to_log(stage_log(results, "2_relabeling")) as log:
        relabeled, _ = relabel_corpus(open_corpus(corpus), threshold=0.5)
    truth = pd.read_csv(corpus / "true_labels.csv").set_index("FileName")["EmoClass"]
    was_x = relabeled[relabeled["EmoClass_Original"] == "X"]
    recovered = (was_x["EmoClass_Recomputed"] == truth.loc[was_x["FileName"]].to_numpy()).mean()
    print(f"[2/7] consensus relabeling, K = 50 % (paper Table 2 on the mini corpus); log: {shown(log)}")
    print(class_count_table(relabeled))
    print(f"      {len(was_x)} X turns; the recomputed label is the true one for {recovered:.0%} of them")


def _train_command(corpus, results, yaml, extra_args):
    """``train.py <yaml>`` with the demo profile on ``corpus``, writing under ``results``."""
    return [
        sys.executable, str(ROOT / "train.py"), str(yaml),
        "--profile", str(PROFILE), f"--data_folder={corpus}", f"--results_folder={results}",
        # Absolute (the profile's default is relative to the repository): the predict stage
        # rebuilds the systems from their hyperparams.yaml in this process, from any folder.
        f"--tiny_models_folder={results / 'models'}",
        *extra_args,
    ]


#: Epochs of the systems that read transcripts (D, E, task2_d). Their text branch is a pretrained
#: MiniLM, so they peak early: in a 20-epoch demo run, D's and E's best dev macro-F1 came at
#: epoch 4 (0.469, 0.494) and task2_d's mean CCC was 0.657 at epoch 6 (best 0.662, epoch 10),
#: while the random-init speech systems were still improving at 20 (the profile's epochs). With
#: 4 epochs (bench/speedup.sh run of 2026-12-01): D 0.469, E 0.444, task2_d 0.670 (6 epochs: 0.472,
#: 0.474, 0.669).
TEXT_SYSTEM_EPOCHS = 4


def text_system_speech_branch(yaml, models_folder):
    """Overrides that give the systems reading transcripts the tiny random-init WavLM as speech branch.

    The profile's speech encoder (Whisper tiny.en's, 4.6x a tiny-WavLM training step) made D, E
    and task2_d cost 1.8-2.7x their time with the tiny WavLM (bench/speedup.sh, 2026-12-04: D 152
    vs 82 s, E 215 vs 80 s, task2_d 178 vs 99 s), the whole demo 1.37x. Their MiniLM text branch
    carries them either way, so they keep the speech branch (and its settings: CNN trained, rate
    5e-4) the demo gave them before; the speech-only systems A, B, C get the pretrained encoder.
    """
    overrides = {"wavlm_hub": Path(models_folder) / "wavlm", "speech_dim": TINY_HIDDEN_SIZE,
                 "freeze_feature_extractor": False, "lr_speech": 0.0005}
    defined = top_level_keys(Path(yaml).read_text())  # another folder's system may lack some
    return [f"--{key}={value}" for key, value in overrides.items() if key in defined]


def uses_transcripts(yaml):
    """Whether a system YAML reads Whisper transcripts (it names a ``whisper_model``)."""
    return re.search(r"^whisper_model:", Path(yaml).read_text(), re.M) is not None


def encoder_count(yaml):
    """How many pretrained encoders a system YAML loads (its top-level ``*_hub`` keys)."""
    return len(re.findall(r"^\w+_hub:", Path(yaml).read_text(), re.M))


def default_jobs():
    """Trainings run side by side: one per core, at most 4 (each ``train.py`` holds ~1.5 GB)."""
    return max(1, min(len(os.sched_getaffinity(0)), 4))


def _epochs_of(folder, known_total=False):
    """``(epochs logged, epochs planned)`` of a training run in ``folder`` (planned: None if known)."""
    planned = None
    if not known_total and (folder / HPARAMS_FILE).is_file():
        epochs = re.search(r"^number_of_epochs: (\d+)", (folder / HPARAMS_FILE).read_text(), re.M)
        planned = int(epochs.group(1)) if epochs else None
    done = 0
    if (folder / "train_log.txt").is_file():
        done = len(re.findall(r"^epoch: ", (folder / "train_log.txt").read_text(), re.M))
    return done, planned


def _turns_transcribed(cache, total):
    """``(turns in the transcript cache, total)``: one JSON line per turn in its shard files."""
    lines = sum(path.read_bytes().count(b"\n") for path in Path(cache).glob("*/shard-*.jsonl"))
    return min(lines, total), total


def _report_classes(name, metrics, seconds, log):
    tqdm.write(f"[4/7] system {name.removeprefix('system_').upper()}: dev macro-F1 "
               f"{metrics['macro_f1']:.3f}, accuracy {metrics['accuracy']:.3f} ({seconds:.0f} s); "
               f"log: {shown(log)}")


def _report_attributes(name, metrics, seconds, log):
    cccs = ", ".join(f"{a} {v:.3f}" for a, v in metrics["ccc"].items())
    tqdm.write(f"[4/7] {name}: dev CCC {cccs}; mean {metrics['mean_ccc']:.3f} ({seconds:.0f} s); "
               f"log: {shown(log)}")


def train_systems(corpus, results, systems, attribute_systems=None, extra_args=(), jobs=1,
                  transcription=None):
    """Train the Task 1 and Task 2 systems (``{name: yaml}`` each) in one pool; their folders.

    ``train.py`` resumes, and a finished system only re-scores. Each run's whole output goes to
    its stage log; the console shows one progress bar per running job and one result line per
    finished system (dev macro-F1, or dev CCC). The demo's tiny models use a second thread
    poorly, so on a 2-core machine two single-threaded jobs side by side end much sooner than
    the same jobs one after the other with two threads each (README, "Speed").

    ``transcription`` — ``(command, log, turns, report)``, the Whisper stage — runs first, in
    one of the ``jobs`` slots, beside the systems that need no transcripts; the systems that read
    them (:func:`uses_transcripts`) start once it has succeeded, for :data:`TEXT_SYSTEM_EPOCHS`
    epochs. Which system starts when a slot frees: a text system when it can (they are the
    longest), else the one with the most encoders (C), Task 2 before Task 1 (Task 2 also trains
    on the X turns, so its epochs are longer); the short speech systems come last, so no long
    one runs alone at the end. Returns ``(task 1 folders, task 2 folders)``, each in its
    systems' order. Failures and Ctrl-C: :func:`recipes.job_pool.run_jobs`.
    """
    attribute_systems = attribute_systems or {}
    threads = max(1, len(os.sched_getaffinity(0)) // jobs)
    # A thread count the user set wins (e.g. a test that shares the machine).
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(threads))}
    epochs_given = any("number_of_epochs" in argument for argument in extra_args)
    pool = []
    if transcription is not None:
        command, whisper_log, turns, report_transcription_ = transcription
        pool.append(Job("whisper", command, whisper_log, "[3/7] Whisper tiny.en",
                        lambda known_total: _turns_transcribed(results / "whisper" / "cache", turns),
                        "turn", lambda seconds: report_transcription_(seconds, whisper_log), priority=(2,)))
    folders = {}
    for kind, chosen, report in (("attributes", attribute_systems, _report_attributes),
                                 ("classes", systems, _report_classes)):
        for name, yaml in chosen.items():
            folder = folders[name] = results / name / str(SEED)
            reads_text = uses_transcripts(yaml)
            epochs = [f"--number_of_epochs={TEXT_SYSTEM_EPOCHS}"] if reads_text and not epochs_given else []
            if reads_text:
                epochs += text_system_speech_branch(yaml, results / "models")
            log = stage_log(results, f"4_{name}")

            def on_success(seconds, name=name, folder=folder, log=log, report=report):
                report(name, read_json(folder / "metrics.json"), seconds, log)

            def progress(known_total, folder=folder):
                return _epochs_of(folder, known_total)

            pool.append(Job(name, _train_command(corpus, results, yaml, [*epochs, *extra_args]), log,
                            f"[4/7] {name}", progress, "epoch", on_success,
                            needs=("whisper",) if reads_text and transcription is not None else (),
                            priority=(int(reads_text), encoder_count(yaml), int(kind == "attributes"))))
    run_jobs(pool, jobs, env)  # a failure: JobFailed, a UserInputError (one line, no traceback)
    return [folders[name] for name in systems], [folders[name] for name in attribute_systems]


def fuse_attributes(folders, results):
    """Fuse the attribute systems (or show the one's CCC) and print the Task 2 CCC table."""
    if len(folders) > 1:
        from fusion.attributes import fuse_attribute_systems, render_attribute_report

        with chatter_to_log(stage_log(results, "6_fusion_task2")):
            metrics = fuse_attribute_systems(folders, results / "fusion_task2")
        interval = metrics["statistics"]["ccc"]["Fusion"]["mean"]
        print(f"[6/7] Task 2 fusion: dev mean CCC {metrics['mean_ccc']:.3f} (95 % CI {interval['low']:.3f}-"
              f"{interval['high']:.3f}) by speaker-disjoint cross-validation\n")
        print(render_attribute_report(metrics))
        print(f"      {results / 'fusion_task2' / 'report.md'}, scatter_*.png, submission.csv")
    else:
        from ser.metrics import format_ccc_table

        metrics = {folder.parent.name: read_json(folder / "metrics.json")
                   for folder in folders}
        print(format_ccc_table(metrics))


def fuse(folders, results):
    from fusion.fuse import fuse_systems
    from fusion.report import render_report

    start = time.perf_counter()
    with chatter_to_log(stage_log(results, "5_fusion")) as log:
        metrics = fuse_systems(folders, results / "fusion")
    interval, calibration = metrics["statistics"]["macro_f1"]["Fusion"], metrics["calibration"]
    print(f"[5/7] SVM fusion: dev macro-F1 {metrics['macro_f1']:.3f} (95 % CI {interval['low']:.3f}-"
          f"{interval['high']:.3f}) by speaker-disjoint cross-validation; calibration error of its "
          f"probabilities {calibration['ece_before']:.3f} -> {calibration['ece_after']:.3f} "
          f"({time.perf_counter() - start:.0f} s); log: {shown(log)}\n")
    print(render_report(metrics))
    for path in metrics["report_files"].values():
        print(f"      {path}")
    print(f"      {results / 'fusion' / 'submission.csv'}")


def predict_examples(corpus, folders, results, n_files=4):
    from ser.inference.predict import write_predictions
    from ser.inference.recognizer import EmotionRecognizer

    files = sorted((corpus / "Audios").glob("*test3*.wav"))[:n_files]
    with chatter_to_log(stage_log(results, "7_predict")) as log:
        recognizer = EmotionRecognizer.from_folders(folders, fusion_dir=results / "fusion")
        predictions = recognizer.classify_files(files)
    out = results / "predict_examples.csv"
    write_predictions(out, predictions, recognizer.classes, recognizer.attributes)
    truth = pd.read_csv(corpus / "true_labels.csv").set_index("FileName")["EmoClass"]
    print(f"\n[7/7] python -m ser.predict on {len(files)} Test3 files -> {out}; log: {shown(log)}")
    for result in predictions:
        name = Path(result.file).name
        attributes = ""
        if result.attributes:
            attributes = " (" + ", ".join(f"{a} {v:.1f}" for a, v in result.attributes.items()) + ")"
        print(f"      {name}: {result.label} (true {truth.get(name, '?')}), "
              f"p = {result.probabilities[result.label]:.2f}{attributes}, transcript: {result.transcript!r}")


def export_demo_package(folders, attribute_folders, results):
    """Export the trained systems and their fusions as ``<results>/package`` and print how to use it.

    Task 1 systems go with the SVM fusion (when there are several), Task 2 systems with theirs;
    the package is written again on each run (a retrained system changes it).
    """
    from ser.inference.export import export_package, package_size

    fusion = results / "fusion" if len(folders) > 1 else None
    attribute_fusion = results / "fusion_task2" if len(attribute_folders) > 1 else None
    with chatter_to_log(stage_log(results, "7_package")) as log:
        out = export_package([*folders, *attribute_folders], results / "package", fusion, overwrite=True,
                             attribute_fusion_dir=attribute_fusion)
    print(f"\n[7/7] model package (python -m ser.export): {shown(out)} ({package_size(out) / 1e6:.0f} MB); "
          f"log: {shown(log)}")
    print(f"      python -m ser.predict --model {shown(out)} FILE")
    print(f"      python -m ser.app --model {shown(out)}")


def _chosen(parser, option, available, chosen, prefix):
    """The systems ``chosen`` by the user (all when None) among ``available``: ``{name: yaml}``."""
    if chosen is None:
        return available
    names = [prefix + choice.lower() for choice in chosen]
    unknown = [choice for choice, name in zip(chosen, names, strict=True) if name not in available]
    if unknown:
        known = ", ".join(name.removeprefix(prefix) for name in available)
        parser.error(f"{option}: no system {unknown[0]!r} (hparams has: {known})")
    return {name: available[name] for name in names}


def main(argv=None):
    parser = ArgumentParser(prog="recipes.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=ROOT / "data" / "mini_corpus")
    parser.add_argument("--results", type=Path, default=ROOT / "results" / "demo")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="mini corpus seed")
    parser.add_argument("--turns", type=turn_count, default=None,
                        help="mini corpus size (default: its own)")
    parser.add_argument("--extra_hparams", type=Path, action="append", default=[], metavar="DIR",
                        help="another folder of system_*.yaml / task2_*.yaml systems (repeatable)")
    parser.add_argument("--systems", nargs="*", default=None, metavar="LETTER",
                        help="Task 1 systems (hparams/system_<letter>.yaml; default: all)")
    parser.add_argument("--attribute_systems", nargs="*", default=None, metavar="NAME",
                        help="Task 2 systems (hparams/<name>.yaml; default: all task2_*.yaml)")
    parser.add_argument("--epochs", type=positive_int, default=None,
                        help="override the profile's epochs (quick runs)")
    parser.add_argument("--jobs", type=positive_int, default=default_jobs(),
                        help="systems trained side by side (default: one per core, at most 4)")
    args = parser.parse_args(argv)
    for folder in args.extra_hparams:
        if not folder.is_dir():
            parser.error(f"--extra_hparams {folder}: no such folder")
    found = {kind: find_systems(kind, args.extra_hparams) for kind in ("classes", "attributes")}
    systems = _chosen(parser, "--systems", found["classes"], args.systems, "system_")
    attribute_systems = _chosen(parser, "--attribute_systems", found["attributes"], args.attribute_systems,
                                "")
    # train.py runs in the repository root: relative paths are the caller's, made absolute here.
    args.corpus, args.results = args.corpus.absolute(), args.results.absolute()
    start = time.perf_counter()
    args.results.mkdir(parents=True, exist_ok=True)
    turns = args.turns
    if turns is None:
        from data_prep.mini_corpus import DEFAULT_TURNS

        turns = DEFAULT_TURNS
    ensure_corpus(args.corpus, args.seed, turns, args.results)
    relabeling_summary(args.corpus, args.results)
    command, log = transcription_job(args.corpus, args.results)
    transcription = (command, log, turns,
                     lambda seconds, log: report_transcription(args.corpus, args.results, seconds, log))
    extra = [f"--number_of_epochs={args.epochs}"] if args.epochs else []
    # One pool: Whisper beside the speech-only systems (Task 1 and 2); the text systems start
    # once it is done.
    folders, attribute_folders = train_systems(args.corpus, args.results, systems, attribute_systems,
                                               extra, args.jobs, transcription)
    if len(folders) > 1:
        fuse(folders, args.results)
    if attribute_folders:
        fuse_attributes(attribute_folders, args.results)
    if len(folders) > 1:
        predict_examples(args.corpus, folders + attribute_folders, args.results)
    if folders or attribute_folders:
        export_demo_package(folders, attribute_folders, args.results)
    print(f"\nDemo done in {time.perf_counter() - start:.0f} s; outputs in {args.results}")


if __name__ == "__main__":
    exit_with("recipes.demo", main, interrupted="every finished stage is kept (corpus, transcripts, "
              "checkpoints); run it again to resume")
