"""What the mini corpus says and how: speakers, sentences with lexical cues, prosody.

Each of the eight emotions is given a prosodic signature (pitch, pitch range,
speaking rate, loudness) and a bank of cue phrases. Both modalities are made
imperfect on purpose, so that a fused system has something to gain:

- acoustically, a per-turn intensity scales the signature towards neutral, speakers
  differ in base pitch and rate, and each turn gets random jitter;
- lexically, about a third of the emotional turns use neutral wording only, some
  cue phrases are shared by two classes, and a few neutral turns carry a shared cue.

Everything draws from a :class:`numpy.random.Generator`, so a seed fixes it all.
"""

from dataclasses import dataclass

import numpy as np

#: espeak-ng English accents used for speakers.
#: (espeak-ng names British English plain "en".)
ACCENTS = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc",
           "en-gb-x-gbclan", "en-gb-x-gbcwmd")
MALE_VARIANTS = tuple(f"m{i}" for i in range(1, 8))
FEMALE_VARIANTS = tuple(f"f{i}" for i in range(1, 6))

# Neutral settings every emotion is expressed relative to.
NEUTRAL_PITCH, NEUTRAL_RANGE, NEUTRAL_RATE, NEUTRAL_VOLUME = 50, 50, 165, 60

#: Emotion -> (pitch shift, range shift, rate factor, volume) at full intensity.
#: Loosely after the acoustic-correlates literature: anger and happiness loud and
#: lively, sadness slow, low and quiet, fear high, fast and narrow, surprise very
#: high and wide, contempt and disgust flat or drawn out. Volumes stay <= 90 so
#: the waveform never clips.
EMOTION_PROSODY = {
    "A": (6, 28, 1.15, 88),
    "C": (-8, -22, 0.88, 62),
    "D": (-4, 12, 0.80, 66),
    "F": (20, -18, 1.25, 45),
    "H": (14, 30, 1.10, 78),
    "N": (0, 0, 1.00, 60),
    "S": (-14, -30, 0.76, 38),
    "U": (24, 40, 1.00, 80),
}

# Content carriers: neutral in wording, short enough for 1.5-5 s turns.
CARRIERS = (
    "I went to the store on Tuesday", "the meeting starts at nine tomorrow",
    "we talked about the new schedule", "my brother called me this morning",
    "the package arrived after lunch", "they moved the office upstairs",
    "I read the whole report last night", "she said the train was late again",
    "we record the next episode on Friday", "the results came in today",
    "he bought a new car last week", "our neighbors painted their house",
    "the teacher changed the homework", "I found my old phone in a drawer",
    "the game went into overtime", "they announced the winner on the radio",
    "my sister is moving to another city", "the restaurant closed early",
    "we finally got the tickets", "the doctor looked at the results",
    "the kids stayed home from school", "someone left a note on my desk",
    "the landlord raised the rent", "my friend sent me the pictures",
    "the bank called about my account", "the manager read my email",
    "they canceled the flight", "I saw the video everyone is sharing",
    "we cleaned out the garage", "the weather changed during the trip",
    "it happened again", "she told me yesterday", "he fixed the old radio",
    "we sold the house",
)

# Cue phrases that belong to one class.
CUES = {
    "A": ("I am so angry about this", "this makes me furious", "how dare they",
          "I have had enough of this"),
    "C": ("what a pathetic joke", "as if they knew anything", "they are beneath me",
          "whatever, nobody cares"),
    "D": ("that is disgusting", "it made me feel sick", "so gross and nasty",
          "yuck, that is revolting"),
    "F": ("I am really scared", "I am afraid of what comes next", "it terrifies me",
          "I could not stop shaking"),
    "H": ("I am so happy", "this is wonderful news", "I love it so much",
          "what a great day"),
    "N": (),
    "S": ("I feel so sad", "I really miss them", "it broke my heart",
          "I feel so lonely now"),
    "U": ("I can not believe it", "no way, really", "that was so unexpected",
          "wow, I had no idea"),
}

# Cue phrases shared by two classes, so that wording alone cannot decide.
SHARED_CUES = {
    ("A", "C"): "this is ridiculous",
    ("A", "D"): "I am sick of it",
    ("C", "D"): "how distasteful",
    ("D", "S"): "it is just awful",
    ("F", "S"): "I am so worried",
    ("F", "U"): "what was that",
    ("H", "U"): "oh wow",
    ("A", "U"): "seriously",
}

# Words that any class may use; they carry no information.
FILLERS = ("to be honest", "anyway", "you know", "well")

# Probability that an emotional turn carries a cue phrase; the rest are worded neutrally.
CUE_PROBABILITY = 0.68
CUE_PROBABILITY_HARD = 0.45
SHARED_CUE_SHARE = 0.35
NEUTRAL_SHARED_CUE_PROBABILITY = 0.12


@dataclass(frozen=True)
class Speaker:
    """One simulated podcast speaker.

    Attributes
    ----------
    spkr_id : int
        The ``SpkrID`` written to the label files.
    voice : str
        espeak-ng voice, accent plus variant (``"en-gb-x-rp+f2"``).
    gender : str
        ``"Male"`` or ``"Female"``, from the variant.
    pitch_offset : float
        Added to every turn's pitch (0-99 scale).
    rate_factor : float
        Multiplies every turn's speaking rate.
    """

    spkr_id: int
    voice: str
    gender: str
    pitch_offset: float
    rate_factor: float


def make_speakers(rng, n_speakers):
    """Draw ``n_speakers`` speakers with distinct ids and (while they last) voices.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    n_speakers : int
        How many speakers.

    Returns
    -------
    list of Speaker

    Example
    -------
    >>> speakers = make_speakers(np.random.default_rng(0), 3)
    >>> len({s.spkr_id for s in speakers}), speakers[0].gender in ("Male", "Female")
    (3, True)
    """
    variants = MALE_VARIANTS + FEMALE_VARIANTS
    combos = [(accent, variant) for accent in ACCENTS for variant in variants]
    order = rng.permutation(len(combos))
    ids = rng.choice(np.arange(1, 2000), size=n_speakers, replace=False)
    speakers = []
    for index in range(n_speakers):
        # More speakers than voices: voices repeat, told apart by pitch and rate offsets.
        accent, variant = combos[order[index % len(combos)]]
        speakers.append(
            Speaker(
                spkr_id=int(ids[index]),
                voice=f"{accent}+{variant}",
                gender="Male" if variant.startswith("m") else "Female",
                pitch_offset=float(rng.uniform(-8, 8)),
                rate_factor=float(rng.uniform(0.9, 1.1)),
            )
        )
    return speakers


def turn_prosody(rng, speaker, emotion, intensity):
    """espeak-ng settings for one turn of ``speaker`` expressing ``emotion``.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of the per-turn jitter.
    speaker : Speaker
        Who speaks.
    emotion : str
        The true class letter.
    intensity : float
        0 gives neutral prosody, 1 the full signature of :data:`EMOTION_PROSODY`.

    Returns
    -------
    dict
        Keyword arguments for :meth:`data_prep.mini_corpus.espeak.EspeakSynthesizer.synthesize`
        (without ``text``).

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> speaker = make_speakers(rng, 1)[0]
    >>> sad = turn_prosody(rng, speaker, "S", 1.0)
    >>> angry = turn_prosody(rng, speaker, "A", 1.0)
    >>> sad["rate"] < angry["rate"] and sad["volume"] < angry["volume"]
    True
    """
    pitch_shift, range_shift, rate_factor, volume = EMOTION_PROSODY[emotion]
    pitch = NEUTRAL_PITCH + speaker.pitch_offset + intensity * pitch_shift + rng.normal(0, 3)
    pitch_range = NEUTRAL_RANGE + intensity * range_shift + rng.normal(0, 6)
    rate = (NEUTRAL_RATE * speaker.rate_factor * (1 + intensity * (rate_factor - 1))
            * rng.uniform(0.95, 1.05))
    loudness = (NEUTRAL_VOLUME + intensity * (volume - NEUTRAL_VOLUME)) * rng.uniform(0.9, 1.1)
    return {
        "voice": speaker.voice,
        "pitch": int(np.clip(round(pitch), 0, 99)),
        "pitch_range": int(np.clip(round(pitch_range), 0, 99)),
        "rate": int(np.clip(round(rate), 90, 260)),
        "volume": int(np.clip(round(loudness), 20, 95)),
    }


def _pick(rng, options):
    return options[int(rng.integers(len(options)))]


def _cue_phrase(rng, emotion, hard):
    """A cue phrase for ``emotion``, or None for neutral wording."""
    if emotion == "N":
        if rng.random() < NEUTRAL_SHARED_CUE_PROBABILITY:
            return _pick(rng, tuple(SHARED_CUES.values()))
        return None
    if rng.random() >= (CUE_PROBABILITY_HARD if hard else CUE_PROBABILITY):
        return None
    shared = tuple(cue for pair, cue in SHARED_CUES.items() if emotion in pair)
    if shared and rng.random() < (2 * SHARED_CUE_SHARE if hard else SHARED_CUE_SHARE):
        return _pick(rng, shared)
    return _pick(rng, CUES[emotion])


def _fitting(budget):
    """Carriers of at most ``budget`` words (maybe none)."""
    return [c for c in CARRIERS if len(c.split()) <= budget]


def compose_sentence(rng, emotion, hard=False, max_words=14):
    """Write one sentence for a turn of ``emotion``.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    emotion : str
        The true class letter.
    hard : bool
        Ambiguous turn: fewer and more often shared cues.
    max_words : int
        Longest sentence allowed (keeps turns under about 5 s).

    Returns
    -------
    str
        The sentence, capitalised and punctuated.

    Example
    -------
    >>> sentence = compose_sentence(np.random.default_rng(1), "H")
    >>> sentence[0].isupper() and sentence[-1] in ".!?"
    True
    """
    cue = _cue_phrase(rng, emotion, hard)
    filler = _pick(rng, FILLERS) if rng.random() < 0.2 else None
    budget = max_words - len(cue.split()) if cue else max_words
    parts = [_pick(rng, _fitting(budget) or [min(CARRIERS, key=len)])]
    if not cue and rng.random() < 0.5:
        # Without a cue, sometimes a second clause, so that sentence length says
        # little about the class.
        second = _fitting(budget - len(parts[0].split()) - 1)
        if second:
            parts.append("and " + _pick(rng, second))
    if cue:
        parts.insert(0 if rng.random() < 0.5 else 1, cue)
    if filler and len(" ".join(parts).split()) + len(filler.split()) <= max_words:
        parts.insert(0, filler)
    sentence = ", ".join(parts)
    ending = "."
    if emotion in ("A", "H", "U") and rng.random() < 0.5:
        ending = "!"
    elif emotion == "U" and rng.random() < 0.4:
        ending = "?"
    return sentence[0].upper() + sentence[1:] + ending


#: Lexical valence of each class's cue phrases (shift from the neutral 4 on the 1-7 scale).
CUE_VALENCE = {"A": -1.8, "C": -1.4, "D": -1.8, "F": -1.5, "H": 2.2, "N": 0.0, "S": -2.0, "U": 0.8}


def lexical_valence(text):
    """Valence shift carried by the cue phrases a sentence contains (0 for neutral wording).

    A shared cue carries the mean valence of its two classes.

    Example
    -------
    >>> lexical_valence("I am so happy, we sold the house."), lexical_valence("We sold the house.")
    (2.2, 0.0)
    """
    said = text.lower()
    shifts = [CUE_VALENCE[emotion] for emotion, cues in CUES.items() for cue in cues if cue.lower() in said]
    shifts += [(CUE_VALENCE[a] + CUE_VALENCE[b]) / 2 for (a, b), cue in SHARED_CUES.items()
               if cue.lower() in said]
    return float(np.mean(shifts)) if shifts else 0.0


def perceived_attributes(prosody, speaker, text):
    """What a listener rates a turn (arousal, valence, dominance, 1-7) from what is heard and said.

    - arousal rises with the speaking rate (relative to the speaker's own),
      the loudness and the pitch range;
    - valence follows the lexical cues, a little the pitch;
    - dominance follows the loudness, a little the rate.

    Annotators then add their own noise (:mod:`data_prep.mini_corpus.annotators`).

    Parameters
    ----------
    prosody : dict
        The espeak settings of :func:`turn_prosody` (``rate``, ``volume``, ``pitch``,
        ``pitch_range``).
    speaker : Speaker
    text : str
        The sentence spoken.

    Returns
    -------
    tuple of float
        ``(act, val, dom)``, clipped to [1, 7].

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> speaker = make_speakers(rng, 1)[0]
    >>> angry = perceived_attributes(turn_prosody(rng, speaker, "A", 1.0), speaker, "how dare they")
    >>> sad = perceived_attributes(turn_prosody(rng, speaker, "S", 1.0), speaker, "I feel so sad")
    >>> angry[0] > sad[0] + 2, angry[2] > sad[2] + 2, sad[1] < 3
    (True, True, True)
    """
    rate = (prosody["rate"] / (NEUTRAL_RATE * speaker.rate_factor) - 1) / 0.15
    loudness = (prosody["volume"] - NEUTRAL_VOLUME) / 20
    spread = (prosody["pitch_range"] - NEUTRAL_RANGE) / 25
    pitch = (prosody["pitch"] - NEUTRAL_PITCH - speaker.pitch_offset) / 15
    act = 4 + 0.6 * rate + 0.8 * loudness + 0.5 * spread
    val = 4 + lexical_valence(text) + 0.3 * pitch
    dom = 4 + 1.2 * loudness + 0.3 * rate
    return tuple(float(np.clip(v, 1, 7)) for v in (act, val, dom))
