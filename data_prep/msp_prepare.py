"""Manifests of MSP-Podcast for SpeechBrain's ``DynamicItemDataset``.

One JSON file per split, keyed by utterance id (the file stem). Each entry:

==============  ==========================================================
key             meaning
==============  ==========================================================
``wav``         absolute path of the audio file
``duration``    seconds (from the file header)
``transcript``  human or Whisper transcript (absent when ``transcripts`` is None)
``emotion``     one of ``A C D F H N S U`` (``X``/``O`` only in kept-all
                splits; ``null`` when the label is hidden, as for Test3)
``speaker``     ``SpkrID`` (``null`` when hidden)
``gender``      ``Gender`` (``null`` when hidden)
``split``       the corpus ``Split_Set`` the turn comes from
``relabeled``   ``true`` for turns added by consensus relabeling (system E)
``attributes``  ``{"EmoAct": a, "EmoVal": v, "EmoDom": d}`` (1-7 scale; ``null``
                when hidden), the Task 2 targets
``votes``       only with ``votes_csv``: label letter -> number of (kept)
                annotators whose primary emotion it is (soft labels)
==============  ==========================================================

Run it as ``python -m data_prep.msp_prepare --data_folder DIR --save_folder OUT``
or call :func:`prepare_msp_podcast` (``train.py`` does, through ``run_on_main``).
The corpus is reached through its reader (:func:`data_prep.corpora.open_corpus`:
any MSP-Podcast release, told from the folder), whose table of turns is all this
module uses; the corpus is only read, never written.

A turn whose audio is missing, unreadable, empty or too short (see
:mod:`data_prep.audio_check`) is left out with a warning and listed in
``<save_folder>/skipped.csv`` (``FileName,Split,Reason``), so one bad file does
not stop a day-long job; ``strict=True`` (``--strict``) stops at it instead.
Label problems stay fatal: they mean a wrong file, not one bad turn. So does a
``Split_Set`` the release does not define (``Train Development Test1 Test2
Test3``), asked for in ``splits`` or found in a label row: its turns would
otherwise silently vanish from (or join) the data.
"""

import json
import logging
from pathlib import Path

import pandas as pd

from data_prep.audio_check import BadAudioError, TurnAudioChecker
from data_prep.corpora import DEFAULT_SPLITS, open_corpus
from data_prep.corpora.base import ATTRIBUTE_COLUMNS, ATTRIBUTE_SCALE
from data_prep.prepare_options import is_done, mark_done, mark_undone, preparation_options
from data_prep.transcript_cache import read_transcripts_csv
from ser.cli import ArgumentParser, exit_with
from ser.emotions import EMOTIONS
from ser.errors import UserInputError
from ser.io.atomic import ensure_writable_folder, write_json_atomic
from ser.io.derived_files import content_stamp
from ser.io.skipped import SKIPPED_CSV

logger = logging.getLogger(__name__)


class PreparationError(UserInputError, ValueError):
    """A problem in the corpus that stops the preparation (names the file)."""


def prepare_msp_podcast(
    data_folder,
    save_folder,
    splits=None,
    transcripts="human",
    relabeled_csv=None,
    keep_all_labels=("test",),
    missing_transcript="error",
    skip_prep=False,
    strict=False,
    votes_csv=None,
):
    """Write one manifest per split; skip when done with the same options.

    Parameters
    ----------
    data_folder : str or Path
        Root of an MSP-Podcast release (any release :mod:`data_prep.corpora` reads).
    save_folder : str or Path
        Where ``<name>.json`` manifests and ``prepare_options.json`` go.
        Must not be inside ``data_folder``.
    splits : dict, optional
        Manifest name → ``Split_Set`` (default :data:`DEFAULT_SPLITS`).
    transcripts : None, "human" or path
        ``None``: no transcript field (speech-only systems); ``"human"``:
        ``Transcripts/<stem>.txt``; a path: a Whisper ``transcripts.csv``
        (``FileName,Transcript``) written by ``data_prep.transcribe``.
    relabeled_csv : path, optional
        Output of ``data_prep.consensus``: its ``AddedToTrain`` turns are
        added to the ``train`` manifest with their recomputed label (system E).
    keep_all_labels : tuple of str
        Manifests that keep every turn (labels X, O or hidden); the others
        keep only turns labelled with one of the 8 classes.
    missing_transcript : {"error", "empty"}
        What to do when a turn has no transcript: stop with an error naming
        the file, or use an empty string (logged with a count).
    skip_prep : bool
        Do nothing (the manifests are expected to exist).
    strict : bool
        Stop with a :class:`PreparationError` at the first turn with bad audio
        instead of leaving it out and listing it in ``skipped.csv``.
    votes_csv : path, optional
        A vote table (``FileName`` + one count column per label, as
        written by :func:`data_prep.system_prep.prepare_system_data` for soft
        labels): each entry gains ``votes``.

    Returns
    -------
    dict
        Manifest name → path of its JSON file.
    """
    splits = dict(DEFAULT_SPLITS if splits is None else splits)
    save_folder = Path(save_folder)
    manifests = {name: save_folder / f"{name}.json" for name in splits}
    if skip_prep:
        return manifests

    corpus = open_corpus(data_folder)
    root = corpus.root
    logger.info("Preparing %s", corpus.describe())
    _check_outside_corpus(root, save_folder)
    corpus.check_audio()
    _check_split_names(corpus, splits)
    if missing_transcript not in ("error", "empty"):
        raise PreparationError(f"missing_transcript: must be 'error' or 'empty', not {missing_transcript!r}")
    options = preparation_options(
        root, corpus.consensus_file, splits, transcripts, relabeled_csv, keep_all_labels, missing_transcript,
        strict, audio_dir=corpus.audio_dir, transcripts_dir=corpus.transcript_path("turn.wav").parent,
    )
    # Attributes joined the entries with the vote tables: older manifests are prepared again.
    options["inputs"]["votes_csv"] = content_stamp(votes_csv) if votes_csv else None
    if is_done(save_folder, [*manifests.values(), save_folder / SKIPPED_CSV], options):
        logger.info("Preparation already done with the same options in %s: skipped", save_folder)
        return manifests

    ensure_writable_folder(save_folder)  # before reading the corpus: a bad folder is said at once
    table = corpus.turns()
    transcript_lookup = _transcript_lookup(corpus, transcripts)
    added = _relabeled_additions(relabeled_csv) if relabeled_csv else None
    votes = _read_votes(votes_csv) if votes_csv else None
    mark_undone(save_folder)  # outputs are about to change: a run stopped half-way is not done
    audio = TurnAudioChecker(strict)
    for name, split in splits.items():
        turns = _split_turns(table, split)
        if name not in keep_all_labels:
            turns = turns[turns["EmoClass"].isin(EMOTIONS)]
        turns = turns.assign(relabeled=False)
        if name == "train" and added is not None:
            turns = pd.concat([turns, _added_turns(table, added, corpus)], ignore_index=True)
        try:
            entries = _manifest_entries(corpus, turns, transcript_lookup, missing_transcript, audio, votes)
        except BadAudioError as error:  # strict mode
            raise PreparationError(
                f"{error} (a turn of {split}); without strict mode such turns are left out "
                f"and listed in {SKIPPED_CSV}"
            ) from error
        if len(turns) and not entries:
            audio.write_skipped_csv(save_folder / SKIPPED_CSV)
            raise PreparationError(
                f"{root}: every one of the {len(turns)} turns of {split} has bad audio "
                f"(listed in {save_folder / SKIPPED_CSV}); is this the right corpus?"
            )
        write_json_atomic(manifests[name], entries)
        logger.info("%s: %d turns from %s -> %s", name, len(entries), split, manifests[name])
    audio.write_skipped_csv(save_folder / SKIPPED_CSV)
    if audio.skipped:
        logger.warning("%d turn(s) left out for bad audio or labels, listed in %s", len(audio.skipped),
                       save_folder / SKIPPED_CSV)
    # Last: its presence means every output is complete. With the skipped files' stamps, so
    # that fixing one of them re-runs the preparation.
    mark_done(save_folder, options, audio.skipped_stamps())
    return manifests


def _check_outside_corpus(root, save_folder):
    save = save_folder.expanduser().resolve()
    if save == root or root in save.parents:
        raise PreparationError(
            f"{save_folder}: save_folder is inside the corpus {root}; the corpus is never written"
        )


def _check_split_names(corpus, splits):
    for name, split in splits.items():
        if split not in corpus.splits:
            raise PreparationError(
                f"split {name!r}: unknown Split_Set {split!r}; expected one of {list(corpus.splits)}"
            )


def _split_turns(table, split):
    turns = table[table["Split_Set"] == split]
    return turns.sort_values("FileName", kind="stable").reset_index(drop=True)


def _relabeled_additions(relabeled_csv):
    path = Path(relabeled_csv)
    if not path.is_file():
        raise PreparationError(f"{path}: relabeled labels file not found (run data_prep.consensus)")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    needed = {"FileName", "EmoClass_Recomputed", "AddedToTrain"}
    missing = needed - set(table.columns)
    if missing:
        raise PreparationError(f"{path}: missing column(s) {sorted(missing)}")
    added = table[table["AddedToTrain"].str.lower() == "true"]
    bad = added[~added["EmoClass_Recomputed"].isin(EMOTIONS)]
    if len(bad):
        line = bad.index[0] + 2  # header is line 1
        raise PreparationError(
            f"{path}:{line}: added turn {bad['FileName'].iloc[0]} has label "
            f"{bad['EmoClass_Recomputed'].iloc[0]!r}, not one of {list(EMOTIONS)}"
        )
    return added.set_index("FileName")["EmoClass_Recomputed"]


def _added_turns(table, added, corpus):
    known = table.set_index("FileName")
    unknown = [name for name in added.index if name not in known.index]
    if unknown:
        raise PreparationError(
            f"relabeled turns not in {corpus.consensus_file}: {unknown[:5]} ({len(unknown)} in all)"
        )
    turns = known.loc[added.index].reset_index()
    turns["EmoClass"] = added.to_numpy()
    return turns.assign(relabeled=True)


class _TranscriptSource:
    """Where the transcripts come from: ``text(FileName)`` (None when missing) and
    ``missing(FileName, split)`` (the one line that says where it should have been)."""

    def __init__(self, corpus, transcripts):
        if transcripts == "human":
            self.text = corpus.transcript
            self.missing = lambda name, split: (
                f"{corpus.transcript_path(name)}: transcript missing for {name} ({split}); transcribe "
                "the corpus with data_prep.transcribe or set missing_transcript='empty'")
            return
        path = Path(transcripts)
        if not path.is_file():
            raise PreparationError(f"{path}: transcripts file not found (run data_prep.transcribe)")
        whisper = {name: text.strip() for name, text in read_transcripts_csv(path).items()}
        self.text = whisper.get
        self.missing = lambda name, split: (
            f"{path}: no transcript row for {name} ({split}); run data_prep.transcribe again over its split "
            "(it resumes and adds the turns it lacks) or set missing_transcript='empty'")


def _transcript_lookup(corpus, transcripts):
    """The :class:`_TranscriptSource` of ``transcripts`` ("human" or a Whisper CSV), or None."""
    return None if transcripts is None else _TranscriptSource(corpus, transcripts)


def _read_votes(votes_csv):
    """FileName -> {label: count} of a vote table (counts of 0 left out)."""
    table = pd.read_csv(votes_csv, index_col="FileName")
    return {name: {label: int(n) for label, n in row.items() if n} for name, row in table.iterrows()}


def _attributes(row):
    values = {name: _known(row, name) for name in ATTRIBUTE_COLUMNS}
    if all(value is None for value in values.values()):
        return None
    return {name: None if value is None else float(value) for name, value in values.items()}


def _outside_scale(row):
    """Why a turn's attributes cannot be the corpus's ratings (outside 1-7), or None.

    Example
    -------
    >>> from types import SimpleNamespace
    >>> _outside_scale(SimpleNamespace(EmoAct=9.5, EmoVal=4.0, EmoDom=float("nan")))
    'EmoAct 9.5 outside the 1-7 scale'
    """
    low, high = ATTRIBUTE_SCALE
    for name in ATTRIBUTE_COLUMNS:
        value = _known(row, name)
        if value is not None and not low <= float(value) <= high:
            return f"{name} {float(value):g} outside the {low:g}-{high:g} scale"
    return None


def _manifest_entries(corpus, turns, transcript_lookup, missing_transcript, audio, votes=None):
    entries = {}
    n_missing = 0
    for row in turns.itertuples(index=False):
        wav = Path(row.wav)
        outside = _outside_scale(row)
        if outside is not None:  # an odd label row: left out and listed like a bad file (strict: stop)
            if audio.strict:
                raise PreparationError(f"{corpus.consensus_file}: {row.FileName} ({row.Split_Set}): "
                                       f"{outside}; without --strict such turns are left out and listed "
                                       f"in {SKIPPED_CSV}")
            logger.warning("%s: %s: left out of the manifests", row.FileName, outside)
            audio.skipped.setdefault(str(wav), (row.FileName, row.Split_Set, outside))
            continue
        duration = audio.duration(wav, row.FileName, row.Split_Set)
        if duration is None:
            continue
        entry = {
            "wav": str(wav),
            "duration": duration,
            "emotion": _known(row, "EmoClass"),
            "speaker": _known(row, "SpkrID"),
            "gender": _known(row, "Gender"),
            "split": row.Split_Set,
            "relabeled": bool(row.relabeled),
            "attributes": _attributes(row),
        }
        if votes is not None:
            entry["votes"] = votes.get(row.FileName, {})
        if transcript_lookup is not None:
            text = transcript_lookup.text(row.FileName)
            if text is None:
                if missing_transcript == "error":
                    raise PreparationError(transcript_lookup.missing(row.FileName, row.Split_Set))
                n_missing += 1
                text = ""
            entry["transcript"] = text
        entries[Path(row.FileName).stem] = entry
    if n_missing:
        logger.warning("%d turns have no transcript: empty strings used", n_missing)
    return entries


def _known(row, column):
    value = getattr(row, column, None)
    return None if value is None or pd.isna(value) or value == "" else value


def main(argv=None):
    parser = ArgumentParser(prog="data_prep.msp_prepare", description=__doc__.split("\n")[0])
    parser.add_argument("--data_folder", required=True)
    parser.add_argument("--save_folder", required=True)
    parser.add_argument(
        "--transcripts",
        default="human",
        help="'human', 'none', or the path of a Whisper transcripts.csv",
    )
    parser.add_argument("--relabeled_csv", default=None)
    parser.add_argument("--missing_transcript", choices=("error", "empty"), default="error")
    parser.add_argument(
        "--split",
        action="append",
        metavar="NAME=Split_Set",
        help="manifest name and corpus split, repeatable (default train=Train valid=Development test=Test3)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="stop at the first bad audio file instead of leaving it out (listed in skipped.csv)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    malformed = [item for item in args.split or [] if "=" not in item]
    if malformed:
        parser.error(f"--split takes NAME=Split_Set (e.g. valid=Development), got {malformed[0]!r}")
    splits = dict(item.split("=", 1) for item in args.split) if args.split else None
    transcripts = None if args.transcripts == "none" else args.transcripts
    manifests = prepare_msp_podcast(
        args.data_folder,
        args.save_folder,
        splits=splits,
        transcripts=transcripts,
        relabeled_csv=args.relabeled_csv,
        missing_transcript=args.missing_transcript,
        strict=args.strict,
    )
    for name, path in manifests.items():
        count = len(json.loads(Path(path).read_text()))
        print(f"{name:>6}: {count:6d} turns  {path}")
    skipped = Path(args.save_folder) / SKIPPED_CSV
    n_skipped = len(skipped.read_text().splitlines()) - 1
    print(f"skipped: {n_skipped:5d} turns with bad audio or labels  {skipped}")


if __name__ == "__main__":
    exit_with("data_prep.msp_prepare", main, interrupted="no manifest was marked done "
              "(prepare_options.json is written last); run the same command again")
