"""Simulated crowd annotators for the mini corpus, and the MSP plurality rule.

A pool of workers labels every turn (5 to 7 annotations each). Most workers are
reliable: they vote the true emotion with high probability and otherwise a
plausibly confusable one. A few are unreliable: they mostly vote at random, so
their agreement with the consensus falls under 50 % and the consensus relabeling
of the paper (section 5.4) drops them.

Three kinds of turns:

- ordinary turns, voted as above;
- *hard* turns, whose votes are arranged so that the plurality rule ties (``X``);
  in most of them the reliable workers still favour the true emotion (possibly
  tied with Neutral), so dropping the unreliable workers recovers it;
- *other* turns, where a strict majority picks ``Other`` (consensus ``O``).

Attribute scores (arousal, valence, dominance, 1-7) follow what each turn
sounds and says (:func:`data_prep.mini_corpus.speech.perceived_attributes`,
known once the turn is spoken): every annotator rates it with their own noise
(:func:`rate_attributes`), rounded to whole points like the real workers.
"""

from collections import Counter
from dataclasses import dataclass, replace

import numpy as np

from ser.emotions import EMOTIONS, LETTER_TO_WORD, NO_AGREEMENT, OTHER

#: Emotions a reliable worker plausibly mistakes each class for.
CONFUSABLE = {
    "A": ("C", "D", "U"), "C": ("A", "D", "N"), "D": ("C", "A", "S"),
    "F": ("S", "U", "A"), "H": ("U", "N"), "N": ("S", "C", "H"),
    "S": ("N", "F", "D"), "U": ("H", "F", "A"),
}

#: Secondary-emotion words annotators add after the primary one.
SECONDARY = {
    "A": ("Frustrated", "Annoyed", "Disgust"), "C": ("Annoyed", "Disappointed"),
    "D": ("Frustrated", "Contempt"), "F": ("Concerned", "Confused"),
    "H": ("Amused", "Excited"), "N": ("Concerned", "Confused"),
    "S": ("Depressed", "Disappointed"), "U": ("Excited", "Confused", "Amused"),
    "O": ("Confused",),
}

#: Free text annotators write after ``Other``.
OTHER_TEXT = ("Bored", "Sarcastic", "Tired", "Curious", "Nervous", "Confident")

#: Standard deviation of one annotator's attribute ratings around what the turn conveys.
ATTRIBUTE_NOISE = 0.8

_LABELS = EMOTIONS + (OTHER,)
# Share of hard turns the reliable workers can still resolve.
RECOVERABLE_SHARE = 0.8


@dataclass(frozen=True)
class Worker:
    """One simulated annotator.

    Attributes
    ----------
    worker_id : str
        ``WORKER`` and eight digits, as in ``labels_detailed.csv``.
    reliable : bool
        False for the random voters.
    accuracy : float
        Probability of voting the true emotion on an ordinary turn.
    """

    worker_id: str
    reliable: bool
    accuracy: float


@dataclass(frozen=True)
class Annotation:
    """One row of ``labels_detailed.csv`` before formatting.

    ``act``, ``val``, ``dom`` are the ratings; ``noise`` is the annotator's
    own deviation on each, drawn with the vote and applied by
    :func:`rate_attributes` once the turn is spoken.
    """

    worker_id: str
    label: str
    primary: str
    secondary: tuple
    act: float
    val: float
    dom: float
    noise: tuple = (0.0, 0.0, 0.0)


def make_workers(rng, n_workers, n_unreliable):
    """Draw a worker pool; the last ``n_unreliable`` workers vote mostly at random.

    Example
    -------
    >>> pool = make_workers(np.random.default_rng(0), 10, 2)
    >>> sum(not w.reliable for w in pool), len({w.worker_id for w in pool})
    (2, 10)
    """
    numbers = rng.choice(np.arange(1, 10**8), size=n_workers, replace=False)
    workers = []
    for index, number in enumerate(numbers):
        reliable = index < n_workers - n_unreliable
        accuracy = float(rng.uniform(0.85, 0.95)) if reliable else 0.2
        workers.append(Worker(f"WORKER{int(number):08d}", reliable, accuracy))
    return workers


def plurality_label(labels):
    """The original MSP-Podcast consensus: the most frequent primary label.

    Parameters
    ----------
    labels : sequence of str
        Primary labels of one turn, letters ``A C D F H N S U O``.

    Returns
    -------
    str
        The winning letter; ``"X"`` on any tie for first place; ``"O"`` when
        Other wins.

    Example
    -------
    >>> plurality_label("HHNS"), plurality_label("HHNN"), plurality_label("OOOAN")
    ('H', 'X', 'O')
    """
    counts = Counter(labels).most_common()
    if not counts:
        raise ValueError("a turn needs at least one annotation")
    if len(counts) > 1 and counts[0][1] == counts[1][1]:
        return NO_AGREEMENT
    return counts[0][0]


def format_emo_detail(annotation):
    """Write one annotation the way ``labels_detailed.csv`` spells it.

    Example
    -------
    >>> a = Annotation("WORKER00014325", "N", "Neutral", ("Concerned", "Frustrated"),
    ...                3.0, 4.0, 4.0)
    >>> format_emo_detail(a)
    'WORKER00014325; Neutral; Concerned,Frustrated; A:3.0; V:4.0; D:4.0;'
    """
    return (f"{annotation.worker_id}; {annotation.primary}; {','.join(annotation.secondary)}; "
            f"A:{annotation.act:.1f}; V:{annotation.val:.1f}; D:{annotation.dom:.1f};")


def _pick(rng, options):
    return options[int(rng.integers(len(options)))]


def _ordinary_vote(rng, worker, truth):
    if not worker.reliable:
        return truth if rng.random() < worker.accuracy else _pick(rng, _LABELS)
    if rng.random() < worker.accuracy:
        return truth
    return OTHER if rng.random() < 0.15 else _pick(rng, CONFUSABLE[truth])


def _fillers(rng, exclude, count):
    """``count`` distinct labels outside ``exclude`` (each gets a single vote)."""
    pool = [label for label in _LABELS if label not in exclude]
    return [pool[i] for i in rng.permutation(len(pool))[:count]]


def _hard_votes(rng, truth, n_reliable, n_unreliable):
    """Votes (reliable, unreliable) of a hard turn: a two-way tie for first place."""
    recoverable = rng.random() < RECOVERABLE_SHARE
    non_neutral = tuple(c for c in CONFUSABLE[truth] if c != "N")
    if recoverable:
        # Neutral is the usual rival of an ambiguous emotion; the relabeling rule
        # breaks a tie with Neutral in favour of the emotion.
        rival = "N" if rng.random() < 0.55 else _pick(rng, non_neutral)
        rival_reliable = 2 if rival == "N" else 1
    else:
        rival, rival_reliable = _pick(rng, non_neutral), 2
    reliable = [truth, truth] + [rival] * rival_reliable
    unreliable = [rival] * (2 - rival_reliable)
    fillers = _fillers(rng, {truth, rival},
                       n_reliable + n_unreliable - len(reliable) - len(unreliable))
    n_more = n_reliable - len(reliable)
    return reliable + fillers[:n_more], unreliable + fillers[n_more:]


def _primary_word(rng, label):
    if label == OTHER and rng.random() < 0.7:
        return f"Other-{_pick(rng, OTHER_TEXT)}"
    return LETTER_TO_WORD[label]


def _annotation(rng, worker, label):
    n_secondary = int(rng.choice(3, p=(0.4, 0.4, 0.2)))
    words = SECONDARY[label]
    secondary = tuple(words[i] for i in sorted(rng.permutation(len(words))[:n_secondary]))
    noise = tuple(float(v) for v in rng.normal(0, ATTRIBUTE_NOISE, 3))
    # Ratings are set by rate_attributes once the turn is spoken (what is heard and said).
    return Annotation(worker.worker_id, label, _primary_word(rng, label), secondary,
                      float("nan"), float("nan"), float("nan"), noise)


def rate_attributes(annotations, perceived):
    """The annotations with their ratings: ``perceived`` + each annotator's noise, whole points in [1, 7].

    Example
    -------
    >>> a = Annotation("WORKER00000001", "N", "Neutral", (), 0.0, 0.0, 0.0, (0.4, -1.2, 0.0))
    >>> rated = rate_attributes([a], (3.2, 4.0, 6.9))[0]
    >>> rated.act, rated.val, rated.dom
    (4.0, 3.0, 7.0)
    """
    rated = []
    for annotation in annotations:
        scores = np.clip(np.rint(np.add(perceived, annotation.noise)), 1, 7)
        rated.append(replace(annotation, act=float(scores[0]), val=float(scores[1]), dom=float(scores[2])))
    return rated


def annotate_turn(rng, workers, truth, kind="ordinary"):
    """Simulate the annotations of one turn.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    workers : list of Worker
        The pool: at least 6 reliable and 2 unreliable workers.
    truth : str
        The true emotion letter.
    kind : {"ordinary", "hard", "other"}
        How the votes are arranged (see the module docstring).

    Returns
    -------
    list of Annotation
        5 to 7 annotations by distinct workers, in random order.

    Example
    -------
    >>> rng = np.random.default_rng(3)
    >>> pool = make_workers(rng, 12, 2)
    >>> hard = annotate_turn(rng, pool, "S", kind="hard")
    >>> plurality_label([a.label for a in hard]), len(hard) >= 5
    ('X', True)
    """
    if kind not in ("ordinary", "hard", "other"):
        raise ValueError(f"unknown turn kind {kind!r}")
    reliable = [w for w in workers if w.reliable]
    unreliable = [w for w in workers if not w.reliable]
    if len(reliable) < 6 or len(unreliable) < 2:
        raise ValueError(f"the worker pool needs at least 6 reliable and 2 unreliable workers, "
                         f"got {len(reliable)} and {len(unreliable)}")
    n_votes = int(rng.integers(5, 8))
    if kind == "hard":
        # Four reliable votes make the tie; one or two unreliable workers complete it.
        n_unreliable = 1 if n_votes == 5 else int(rng.integers(1, 3))
        chosen_reliable = [reliable[i] for i in
                           rng.choice(len(reliable), n_votes - n_unreliable, replace=False)]
        chosen_unreliable = [unreliable[i] for i in
                             rng.choice(len(unreliable), n_unreliable, replace=False)]
        votes_r, votes_u = _hard_votes(rng, truth, len(chosen_reliable), n_unreliable)
        pairs = (list(zip(chosen_reliable, votes_r, strict=True))
                 + list(zip(chosen_unreliable, votes_u, strict=True)))
    else:
        chosen = [workers[i] for i in rng.choice(len(workers), n_votes, replace=False)]
        votes = [_ordinary_vote(rng, worker, truth) for worker in chosen]
        if kind == "other":
            # A strict majority of Other votes makes the consensus O.
            n_other = n_votes // 2 + 1
            votes = [OTHER] * n_other + votes[n_other:]
        pairs = list(zip(chosen, votes, strict=True))
    annotations = [_annotation(rng, worker, label) for worker, label in pairs]
    return [annotations[i] for i in rng.permutation(len(annotations))]
