"""Random multi-instrument compositions in ten styles, as notes and General MIDI files.

The music is built so that its labels are audible: diatonic chords in the key (progressions start
on the tonic and pass through the dominant), the bass on each chord's root, a melody of chord tones
and scale steps, and a drum pattern with a hit on every beat. The drumless styles (ambient,
orchestral) keep the pulse with a quarter-note arpeggio, or a string ostinato and timpani, and
keep their melodies on the beat.
Everything follows from one integer seed.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import mido
import numpy as np
from music_analysis import PITCH_CLASSES

TICKS = 480  # MIDI ticks per beat
DRUM_CHANNEL = 9  # GM channel 10

# --- styles -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Inst:
    """A General MIDI program and the words a caption uses for it."""

    program: int
    name: str


@dataclass(frozen=True)
class Style:
    """A genre: the instruments each role may take, the rhythms they play, and its tempo range."""

    genre: str
    names: tuple[str, ...]  # caption synonyms
    moods: tuple[str, ...]
    bpm: tuple[int, int]
    chords: tuple[Inst, ...]
    bass: tuple[Inst, ...]
    lead: tuple[Inst, ...]
    comp: tuple[str, ...]  # chord rhythm, see _comp()
    bassline: str  # see _bassline()
    drums: str | None  # pattern in DRUMS; None = no drum kit
    pad: tuple[Inst, ...] = ()
    pulse: Inst | None = None  # a pitched instrument hitting the root on the beat (timpani)
    sevenths: bool = False
    swing: float = 0.0  # how far an off-beat eighth moves late, in beats (1/6 = triplet swing)
    density: float = 1.0  # melody note density factor
    reverb: int = 40  # CC91 send


PIANO, EPIANO, ORGAN = Inst(0, "piano"), Inst(4, "electric piano"), Inst(16, "organ")
UPRIGHT, EBASS = Inst(32, "upright bass"), Inst(33, "electric bass")
FRETLESS = Inst(35, "fretless bass")
STRINGS, FLUTE, VIBES = Inst(48, "strings"), Inst(73, "flute"), Inst(11, "vibraphone")
SYNTH_LEAD, WARM_PAD = Inst(80, "synth lead"), Inst(89, "warm pad")

STYLES = (
    Style(
        genre="ballad",
        names=("piano ballad", "ballad", "piano piece"),
        moods=("mellow", "sad", "tender", "romantic"),
        bpm=(60, 84),
        chords=(PIANO,),
        bass=(UPRIGHT, FRETLESS),
        lead=(PIANO, Inst(40, "violin"), FLUTE, Inst(42, "cello")),
        comp=("arp", "block"),
        bassline="whole",
        drums="ballad",
        pad=(STRINGS,),
        density=0.8,
        reverb=70,
    ),
    Style(
        genre="rock",
        names=("rock", "rock track", "rock song", "guitar rock"),
        moods=("energetic", "aggressive", "upbeat", "driving"),
        bpm=(100, 180),
        chords=(Inst(30, "distorted guitar"), Inst(29, "overdriven guitar")),
        bass=(Inst(34, "electric bass"),),
        lead=(Inst(29, "lead guitar"), Inst(30, "distorted lead guitar")),
        comp=("power",),
        bassline="eighths",
        drums="rock",
    ),
    Style(
        genre="ambient",
        names=("ambient", "ambient piece", "ambient soundscape"),
        moods=("calm", "dreamy", "ethereal", "peaceful"),
        bpm=(60, 100),
        chords=(WARM_PAD, Inst(88, "new age pad"), Inst(94, "halo pad"), Inst(91, "choir pad")),
        bass=(FRETLESS, Inst(50, "synth strings")),
        lead=(Inst(98, "crystal synth"), Inst(8, "celesta"), Inst(10, "music box"), FLUTE),
        comp=("arp",),
        bassline="whole",
        drums=None,
        pad=(WARM_PAD, Inst(95, "sweep pad")),
        density=0.5,
        reverb=110,
    ),
    Style(
        genre="jazz",
        names=("jazz", "jazz tune", "jazz combo", "swing jazz"),
        moods=("relaxed", "smooth", "lively", "cool"),
        bpm=(90, 180),
        chords=(ORGAN, EPIANO, PIANO),
        bass=(UPRIGHT,),
        lead=(Inst(66, "tenor sax"), Inst(56, "trumpet"), VIBES, Inst(65, "alto sax")),
        comp=("charleston",),
        bassline="walk",
        drums="swing",
        sevenths=True,
        swing=1 / 6,
        density=0.9,
        reverb=50,
    ),
    Style(
        genre="electronic",
        names=("electronic", "electronic dance track", "EDM track", "synth track"),
        moods=("energetic", "driving", "hypnotic", "euphoric"),
        bpm=(110, 150),
        chords=(Inst(81, "saw synth"), Inst(90, "polysynth")),
        bass=(Inst(38, "synth bass"), Inst(39, "synth bass")),
        lead=(SYNTH_LEAD, Inst(81, "saw lead")),
        comp=("stab", "eighths"),
        bassline="offbeat",
        drums="four",
        pad=(WARM_PAD,),
    ),
    Style(
        genre="orchestral",
        names=("orchestral", "orchestral piece", "cinematic orchestral piece"),
        moods=("epic", "dramatic", "majestic", "tender"),
        bpm=(60, 140),
        chords=(STRINGS, Inst(45, "pizzicato strings")),  # short attacks: the ostinato is the pulse
        bass=(Inst(43, "double bass"), Inst(42, "cellos")),
        lead=(Inst(40, "violin"), FLUTE, Inst(60, "french horn"), Inst(68, "oboe")),
        comp=("ostinato",),
        bassline="half",
        drums=None,
        pad=(Inst(49, "slow strings"),),
        pulse=Inst(47, "timpani"),
        reverb=80,
    ),
    Style(
        genre="folk",
        names=("folk", "folk song", "acoustic folk"),
        moods=("warm", "cheerful", "nostalgic", "carefree"),
        bpm=(80, 140),
        chords=(Inst(25, "acoustic guitar"), Inst(24, "nylon guitar")),
        bass=(UPRIGHT,),
        lead=(
            FLUTE,
            Inst(110, "fiddle"),
            Inst(22, "harmonica"),
            Inst(105, "banjo"),
            Inst(21, "accordion"),
        ),
        comp=("strum",),
        bassline="rootfifth",
        drums="folk",
    ),
    Style(
        genre="lofi",
        names=("lo-fi hip hop", "lofi beat", "chill hip hop beat"),
        moods=("chill", "relaxed", "nostalgic", "laid-back"),
        bpm=(70, 95),
        chords=(EPIANO, PIANO),
        bass=(EBASS,),
        lead=(VIBES, Inst(59, "muted trumpet"), FLUTE),
        comp=("block",),
        bassline="syncop",
        drums="boombap",
        sevenths=True,
        swing=0.08,
        density=0.6,
        reverb=50,
    ),
    Style(
        genre="pop",
        names=("pop", "pop song", "pop track"),
        moods=("upbeat", "happy", "bright", "uplifting"),
        bpm=(90, 130),
        chords=(PIANO, Inst(27, "clean electric guitar"), EPIANO),
        bass=(EBASS,),
        lead=(SYNTH_LEAD, Inst(1, "bright piano"), Inst(53, "voice oohs")),
        comp=("eighths",),
        bassline="eighths",
        drums="pop",
    ),
    Style(
        genre="bossa nova",
        names=("bossa nova", "bossa nova tune", "latin bossa"),
        moods=("relaxed", "smooth", "warm", "breezy"),
        bpm=(110, 150),
        chords=(Inst(24, "nylon guitar"),),
        bass=(UPRIGHT,),
        lead=(FLUTE, Inst(65, "alto sax"), VIBES),
        comp=("bossa",),
        bassline="rootfifth",
        drums="bossa",
        sevenths=True,
        reverb=50,
    ),
)

# How lively each mood plays (velocity, melody density, tempo bias) and its leaning to a mode.
ENERGY = {
    "mellow": 0.3, "sad": 0.2, "tender": 0.25, "romantic": 0.35, "energetic": 0.9,
    "aggressive": 1.0, "upbeat": 0.75, "driving": 0.8, "calm": 0.2, "dreamy": 0.3,
    "ethereal": 0.25, "peaceful": 0.2, "relaxed": 0.4, "smooth": 0.45, "lively": 0.75,
    "cool": 0.5, "hypnotic": 0.6, "euphoric": 0.9, "epic": 0.9, "dramatic": 0.8,
    "majestic": 0.7, "warm": 0.45, "cheerful": 0.7, "nostalgic": 0.35, "carefree": 0.6,
    "chill": 0.3, "laid-back": 0.35, "happy": 0.7, "bright": 0.65, "uplifting": 0.75,
    "breezy": 0.5,
}  # fmt: skip
MINOR_MOODS = {"sad", "dramatic", "epic", "aggressive"}
MAJOR_MOODS = {"happy", "cheerful", "uplifting", "bright", "carefree"}

# Drum patterns: GM note -> (onsets in beats within a 4/4 bar, velocity 0–127). Every pattern puts
# a hit on each beat so the tempo is audible; only the drumless styles (ambient, orchestral) lack
# one, and there the arpeggio, or the string ostinato and timpani, carry the pulse. Patterns with
# dotted (1.5-beat) figures made the beat tracker hear 2/3 of the tempo, so there are none.
KICK, STICK, SNARE, CLAP, CLOSED, PEDAL, OPEN = 36, 37, 38, 39, 42, 44, 46
CRASH, RIDE, TAMB, SHAKER = 49, 51, 54, 70
EIGHTHS = [i / 2 for i in range(8)]
DRUMS = {
    "rock": {KICK: ([0, 2, 2.5], 110), SNARE: ([1, 3], 110), CLOSED: (EIGHTHS, 85)},
    "pop": {
        KICK: ([0, 1.5, 2], 105), SNARE: ([1, 3], 100), CLOSED: (EIGHTHS, 75), TAMB: ([1, 3], 60)
    },
    "ballad": {KICK: ([0, 2], 85), STICK: ([1, 3], 80), CLOSED: ([0, 1, 2, 3], 60)},
    "four": {
        KICK: ([0, 1, 2, 3], 115), CLAP: ([1, 3], 95), OPEN: ([0.5, 1.5, 2.5, 3.5], 75),
        CLOSED: ([i / 4 for i in range(16)], 50),
    },
    "swing": {RIDE: ([0, 1, 1.5, 2, 3, 3.5], 90), PEDAL: ([1, 3], 80), KICK: ([0, 1, 2, 3], 50)},
    "boombap": {KICK: ([0, 1.75, 2.5], 110), SNARE: ([1, 3], 105), CLOSED: (EIGHTHS, 70)},
    "folk": {KICK: ([0, 2], 95), STICK: ([1, 3], 85), TAMB: (EIGHTHS, 55), SHAKER: (EIGHTHS, 50)},
    "bossa": {KICK: ([0, 1, 2, 3], 90), STICK: ([0.75, 2.5], 60), CLOSED: (EIGHTHS, 60)},
}  # fmt: skip

# --- harmony ------------------------------------------------------------------------------------

SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
# Scale-degree progressions (0 = tonic). All start on the tonic and (nearly all) pass through the
# dominant, so the key is unambiguous rather than drifting toward the relative key.
PROGRESSIONS = {
    "major": ((0, 4, 5, 3), (0, 3, 4, 0), (0, 5, 3, 4), (0, 3, 0, 4),
              (0, 1, 4, 0), (0, 3, 5, 4), (0, 5, 1, 4)),
    "minor": ((0, 5, 2, 4), (0, 3, 4, 0), (0, 6, 5, 4), (0, 3, 5, 4),
              (0, 5, 3, 4), (0, 4, 0, 3), (0, 2, 3, 4)),
}  # fmt: skip
ROMAN = ("I", "II", "III", "IV", "V", "VI", "VII")


def scale_pitches(tonic: int, mode: str, degree: int) -> list[int]:
    """Pitch classes of the scale to use over a chord; minor takes the raised 7th over V."""
    pcs = [(tonic + s) % 12 for s in SCALES[mode]]
    if mode == "minor" and degree == 4:
        pcs[6] = (tonic + 11) % 12  # harmonic minor: a major V with a leading tone
    return pcs


def chord_tones(tonic: int, mode: str, degree: int, sevenths: bool) -> list[int]:
    """Pitch classes of the diatonic triad (or seventh chord) on `degree`, root first."""
    pcs = scale_pitches(tonic, mode, degree)
    return [pcs[(degree + step) % 7] for step in ((0, 2, 4, 6) if sevenths else (0, 2, 4))]


def roman(mode: str, degree: int) -> str:
    """Roman numeral of a diatonic chord: upper case for major, lower for minor/diminished."""
    third = (SCALES[mode][(degree + 2) % 7] - SCALES[mode][degree]) % 12
    major = third == 4 or (mode == "minor" and degree == 4)
    return ROMAN[degree] if major else ROMAN[degree].lower()


def voice(pcs: list[int], low: int, high: int) -> list[int]:
    """Stack pitch classes upward from the first one above `low`, then fold notes into range."""
    notes, prev = [], low - 1
    for pc in pcs:
        n = prev + 1 + (pc - prev - 1) % 12
        notes.append(n)
        prev = n
    return sorted(n - 12 if n > high else n for n in notes)


# --- composition --------------------------------------------------------------------------------


@dataclass
class Song:
    """A composition: attributes, and notes as (channel, start beat, beats, pitch, velocity)."""

    attrs: dict
    style: Style
    programs: dict[int, Inst]
    notes: list[tuple[int, float, float, int, int]]
    beats: float


class _Writer:
    """Collects notes on channels with velocity humanisation and swing of off-beat eighths."""

    def __init__(self, rng: random.Random, swing: float):
        self.rng, self.swing, self.notes = rng, swing, []

    def add(self, ch: int, beat: float, dur: float, pitch: int, vel: float) -> None:
        if self.swing and abs(beat % 1 - 0.5) < 1e-6:
            beat += self.swing
        vel = round(vel + self.rng.uniform(-6, 6))
        self.notes.append((ch, beat, max(dur, 0.05), pitch, min(max(vel, 1), 127)))


def _comp(w: _Writer, kind: str, start: float, span: float, pcs: list[int], vel: float) -> None:
    """Chord instrument rhythm over one chord (pitch classes, root first) of `span` beats."""
    notes = voice(pcs, 52, 72)
    if kind == "block":
        for t in np.arange(0, span, 2.0):
            for n in notes:
                w.add(0, start + t, min(2.0, span - t) * 0.95, n, vel)
    elif kind == "arp":  # up and down the chord in quarters: eighths get heard as double tempo
        cycle = notes + [notes[0] + 12] + notes[-1:0:-1]
        for i, t in enumerate(np.arange(0, span, 1.0)):
            w.add(0, start + t, 1.8, cycle[i % len(cycle)], vel - 4)
    elif kind == "power":  # root, fifth, octave in palm-muted eighths, the third on top for mode
        root = 40 + (pcs[0] - 40) % 12
        third, fifth = (pcs[1] - pcs[0]) % 12, (pcs[2] - pcs[0]) % 12
        for t in np.arange(0, span, 0.5):
            accent = 12 if t % 1 == 0 else 0
            for n in (root, root + fifth, root + 12):
                w.add(0, start + t, 0.4, n, vel + accent)
            w.add(0, start + t, 0.4, root + 12 + third, vel + accent - 15)
    else:
        onsets, dur = {
            "charleston": ([0, 1.5], 0.6),
            "stab": ([0.5, 1.5, 2.5, 3.5], 0.3),
            "strum": ([0, 1, 1.5, 2.5, 3, 3.5], 0.45),
            "eighths": (EIGHTHS, 0.45),
            "ostinato": (EIGHTHS, 0.4),
            "bossa": ([0, 1, 1.5, 2.5, 3], 0.5),
        }[kind]
        for beat in _bar_pattern(onsets, start, span):
            accent = 8 if beat % 1 == 0 else -8  # on-beat hits louder: the pulse reads as the beat
            for i, n in enumerate(notes):  # a strum rolls over the strings
                w.add(0, beat + (0.02 * i if kind == "strum" else 0), dur, n, vel + accent)


def _bar_pattern(onsets: list[float], start: float, span: float) -> list[float]:
    """Absolute beats of a one-bar (4/4) rhythm that fall inside [start, start + span)."""
    bar0 = math.floor(start / 4) * 4
    bars = range(bar0, math.ceil(start + span), 4)
    return [b + t for b in bars for t in onsets if start <= b + t < start + span]


def _bassline(
    w: _Writer, kind: str, start: float, span: float, pcs: list[int], nxt: int, vel: float
) -> None:
    """Bass over one chord: the root on its first beat, style rhythm after."""
    root = 28 + (pcs[0] - 28) % 12  # E1..D#2
    fifth = root + (pcs[2] - pcs[0]) % 12  # the diatonic fifth (diminished on vii°)
    if kind == "whole":
        w.add(1, start, span * 0.98, root, vel)
    elif kind == "half":
        for t in np.arange(0, span, 2.0):
            w.add(1, start + t, 1.9, root, vel)
    elif kind == "eighths":
        for t in np.arange(0, span, 0.5):
            w.add(1, start + t, 0.45, root, vel + (8 if t % 1 == 0 else 0))
    elif kind == "offbeat":
        for t in np.arange(0, span, 1.0):
            w.add(1, start + t + 0.5, 0.4, root, vel)
    elif kind == "walk":  # root, chord tones, then a step into the next root
        tones = [root, root + (pcs[1] - pcs[0]) % 12, fifth]
        target = 28 + (nxt - 28) % 12
        for i, t in enumerate(np.arange(0, span, 1.0)):
            last = t + 1 >= span
            pitch = target + w.rng.choice((-1, 1, 2)) if last else tones[i % 3]
            w.add(1, start + t, 0.9, pitch, vel)
    else:
        pattern = {
            "rootfifth": [(0, root, 1.9), (2, fifth, 1.9)],
            "syncop": [(0, root, 1.4), (1.5, root, 0.9), (3, root + 12, 0.4), (3.5, root, 0.4)],
        }[kind]
        for t, pitch, dur in pattern:  # relative to the chord, so the root always starts it
            if t < span:
                w.add(1, start + t, dur, pitch, vel)


def _melody(
    w: _Writer,
    chords: list[tuple[float, float, int]],
    tonic: int,
    mode: str,
    energy: float,
    density: float,
    sevenths: bool,
    beats: float,
    grid: float,
) -> None:
    """A diatonic line: chord tones on the beats, scale steps between, two-bar rhythm motifs."""
    rng = w.rng
    p_note = min(0.9, (0.35 + 0.45 * energy) * density)
    slots = np.arange(0, 4, grid)
    motifs = [
        [t for t in slots if t == 0 or rng.random() < (p_note if t % 1 else p_note + 0.2)]
        for _ in range(2)
    ]
    current, idx = 72 + (tonic - 72) % 12, 0  # start on the tonic, C5..B5
    for bar in range(math.ceil(beats / 4)):
        onsets = motifs[(bar // 2) % 2] if bar % 4 != 3 else motifs[0]
        for j, t in enumerate(onsets):
            beat = bar * 4 + t
            if beat >= beats:
                break
            while idx + 1 < len(chords) and chords[idx + 1][0] <= beat:
                idx += 1
            degree = chords[idx][2]
            scale = scale_pitches(tonic, mode, degree)
            if t % 1 == 0:  # strong: nearest chord tone (one of the two nearest, for variety)
                pool = chord_tones(tonic, mode, degree, sevenths)
            else:  # weak: any scale tone a step or two away
                pool = scale
            cands = sorted(
                (n for n in range(62, 89) if n % 12 in pool), key=lambda n: abs(n - current)
            )
            current = rng.choice(cands[:2] if t % 1 == 0 else cands[1:4])
            end = onsets[j + 1] if j + 1 < len(onsets) else 4.0
            w.add(2, beat, (end - t) * 0.9, current, 70 + 40 * energy)


def compose(seed: int, seconds: float) -> Song:
    """A random composition from its seed alone: same seed, same notes and attributes."""
    rng = random.Random(seed)
    style = rng.choice(STYLES)
    mood = rng.choice(style.moods)
    energy = ENERGY[mood]
    minor_p = 0.8 if mood in MINOR_MOODS else 0.2 if mood in MAJOR_MOODS else 0.5
    mode = "minor" if rng.random() < minor_p else "major"
    tonic = rng.randrange(12)
    lo, hi = style.bpm
    bpm = round(lo + (hi - lo) * (0.6 * rng.random() + 0.4 * energy))  # livelier moods lean faster
    progression = rng.choice(PROGRESSIONS[mode])
    comp = rng.choice(style.comp)
    chord_inst, bass_inst, lead_inst = (
        rng.choice(style.chords),
        rng.choice(style.bass),
        rng.choice(style.lead),
    )
    pad_inst = rng.choice(style.pad) if style.pad and rng.random() < 0.6 else None

    beats = math.ceil(seconds * bpm / 60 / 4) * 4 + 4  # whole bars, one past the clip's end
    chord_beats = 2.0 if bpm < 90 else 4.0  # slow songs change chord every half bar
    w = _Writer(rng, style.swing)
    chords = []
    vel = 60 + 35 * energy
    for i, start in enumerate(np.arange(0, beats, chord_beats)):
        degree = progression[i % len(progression)]
        pcs = chord_tones(tonic, mode, degree, style.sevenths)
        chords.append((float(start), chord_beats, degree))
        _comp(w, comp, start, chord_beats, pcs, vel - 10)
        nxt = chord_tones(tonic, mode, progression[(i + 1) % len(progression)], False)[0]
        _bassline(w, style.bassline, start, chord_beats, pcs, nxt, vel + 5)
        if pad_inst:
            for n in voice(pcs, 60, 79):
                w.add(3, start, chord_beats * 0.98, n, vel - 25)
        if style.pulse:
            for t in np.arange(0, chord_beats, 1.0):
                w.add(4, start + t, 0.9, 40 + (pcs[0] - 40) % 12, vel + (10 if t == 0 else -5))
    # without drums, off-beat melody notes blur the pulse: keep the tune on the beats
    grid = 1.0 if style.drums is None else 0.5
    _melody(w, chords, tonic, mode, energy, style.density, style.sevenths, beats, grid)
    if style.drums:
        for bar in range(int(beats // 4)):
            for note, (onsets, v) in DRUMS[style.drums].items():
                for t in onsets:
                    accent = 1.0 if t % 1 == 0 else 0.85  # off-beat hits softer: clearer beat
                    w.add(DRUM_CHANNEL, bar * 4 + t, 0.25, note, v * accent * (0.75 + 0.3 * energy))
            if bar == 0 and style.drums in ("rock", "pop", "four"):
                w.add(DRUM_CHANNEL, 0, 1, CRASH, 100)

    programs = {0: chord_inst, 1: bass_inst, 2: lead_inst}
    if pad_inst:
        programs[3] = pad_inst
    if style.pulse:
        programs[4] = style.pulse
    # lead first: it is the instrument a caption names first; duplicates (piano + piano) once
    named = [lead_inst, chord_inst, bass_inst, *programs.values()]
    instruments = list(dict.fromkeys(i.name for i in named))
    if style.drums:
        instruments.append("drums")
    attrs = {
        "genre": style.genre,
        "mood": mood,
        "key": f"{PITCH_CLASSES[tonic]} {mode}",
        "tonic": PITCH_CLASSES[tonic],
        "mode": mode,
        "bpm": bpm,
        "instruments": instruments,
        "drums": style.drums is not None,
        "progression": "-".join(roman(mode, d) for d in progression),
        "seed": seed,
    }
    return Song(attrs, style, programs, w.notes, float(beats))


def to_midi(song: Song) -> mido.MidiFile:
    """A type-1 MIDI file: a tempo track and one track per channel, with mix and pan settings."""
    mid = mido.MidiFile(type=1, ticks_per_beat=TICKS)
    meta = mido.MidiTrack(
        [mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(song.attrs["bpm"]), time=0)]
    )
    mid.tracks.append(meta)
    # channel: (volume, pan); chords and lead sit apart so the render is genuinely stereo
    mix = {
        0: (88, 40),
        1: (100, 64),
        2: (98, 88),
        3: (72, 64),
        4: (96, 64),
        DRUM_CHANNEL: (100, 64),
    }
    for ch in sorted({n[0] for n in song.notes}):
        events = []
        for _, beat, dur, pitch, vel in (n for n in song.notes if n[0] == ch):
            on = round(beat * TICKS)
            events.append((on, 1, mido.Message("note_on", channel=ch, note=pitch, velocity=vel)))
            events.append(
                (on + round(dur * TICKS), 0, mido.Message("note_off", channel=ch, note=pitch))
            )
        events.sort(key=lambda e: (e[0], e[1]))  # note-offs before note-ons at the same tick
        # the track ends with the piece, or with its last note-off if a note rings past it
        end = max(round(song.beats * TICKS), events[-1][0])
        events.append((end, 0, mido.MetaMessage("end_of_track")))
        volume, pan = mix[ch]
        setup = [
            mido.Message("control_change", channel=ch, control=c, value=v)
            for c, v in ((7, volume), (10, pan), (91, song.style.reverb))
        ]
        if ch in song.programs:
            setup.insert(
                0, mido.Message("program_change", channel=ch, program=song.programs[ch].program)
            )
        track, now = mido.MidiTrack(setup), 0
        for tick, _, msg in events:
            track.append(msg.copy(time=tick - now))
            now = tick
        mid.tracks.append(track)
    return mid
