"""Scoring for `eval_text_following.py`: what a caption states, and how often clips agree with it.

Pure logic on estimates and metadata rows (no model, no audio), so it is quick to test.

A metric counts only rows whose caption states its attribute:

- tempo: the caption gives this BPM ("120 BPM", "120bpm", "120 beats per minute");
- key: the caption names this key, in any spelling ("D minor", "C sharp major", "Bb minor key");
- mode: the caption says this mode, "major" or "minor" (in this data recipe only ever as part of
  a key, so these are the rows that state the key; a bare "minor key" would count too);
- drums: the caption says so in words: "drums" in its instrument list (the recipe adds "drums"
  to a song's instruments exactly when it has a kit) or "no drums" / "without drums" / "no
  percussion" (said of drumless songs only). About half the captions of songs with a kit name
  it, and 30 % of those without say so, so this subset leans heavily towards drums;
- drums_all: every row with a ``drums`` label. The recipe's captions always name the genre, and
  in `synth_music.py` a genre fixes the kit (ambient and orchestral never have one, the eight
  others always do), so every caption implies it — but only to a model that has learnt which
  genres have drums.
"""

from __future__ import annotations

import random
import re

from music_analysis import key_match, parse_key, tempo_match

# "120 BPM", "120bpm", "120 beats per minute" — every tempo spelling of the data recipe.
_TEMPO_RE = re.compile(r"\b(\d{2,3})\s*(?:bpm|beats per minute)\b", re.IGNORECASE)
# "D minor", "F# major", "Eb minor", "B flat minor", "C sharp major".
_KEY_RE = re.compile(r"\b([A-G](?:#|♯|b|♭)?(?:\s+(?:sharp|flat))?)\s+(major|minor)\b")
_MODE_RE = re.compile(r"\b(major|minor)\b", re.IGNORECASE)
_NO_DRUMS_RE = re.compile(r"\b(?:no|without)\s+(?:drums?|percussion)\b", re.IGNORECASE)
_DRUMS_RE = re.compile(r"\bdrums?\b", re.IGNORECASE)

METRICS = {  # name -> (description, test on one scored pair)
    "tempo": ("tempo within 8 %", lambda s: s["tempo_strict"]),
    "tempo_octave": ("tempo within 8 %, half/double ok", lambda s: s["tempo_octave"]),
    "key_exact": ("key exact", lambda s: s["key_match"] == "exact"),
    "key_relative": ("key exact or relative", lambda s: s["key_match"] != "none"),
    "mode": ("mode (major/minor)", lambda s: s["mode_match"]),
    "drums": ("drums or none (caption says)", lambda s: s["drums_match"]),
    "drums_all": ("drums or none (all; genre implies)", lambda s: s["drums_match"]),
}
# Which caption attribute a metric needs stated.
NEEDS = {
    "tempo": "tempo",
    "tempo_octave": "tempo",
    "key_exact": "key",
    "key_relative": "key",
    "mode": "mode",
    "drums": "drums",
    "drums_all": "drums_all",
}
# The comparisons of generated clips (the two ceilings are of recordings).
GENERATED = ("matched", "shuffled", "all_pairs")


def states_tempo(text: str, bpm: float) -> bool:
    """Whether the caption states this tempo in BPM."""
    return any(int(m.group(1)) == round(bpm) for m in _TEMPO_RE.finditer(text))


def states_key(text: str, tonic: str, mode: str) -> bool:
    """Whether the caption names this key, in any spelling (``C#``, ``C sharp``...)."""
    wanted = parse_key((tonic, mode))
    for m in _KEY_RE.finditer(text):
        try:
            if parse_key((m.group(1), m.group(2))) == wanted:
                return True
        except ValueError:
            continue
    return False


def states_mode(text: str, mode: str) -> bool:
    """Whether the caption says this mode ("minor" in "D minor", "minor key"...) and not the other.

    A caption that says both ("major" and "minor") states neither.
    """
    said = {m.group(1).lower() for m in _MODE_RE.finditer(text)}
    return said == {mode.lower()}


def caption_drums(text: str) -> bool | None:
    """What the caption says about drums: True ("... and drums"), False ("no drums"), or None."""
    if _NO_DRUMS_RE.search(text):
        return False
    if _DRUMS_RE.search(text):
        return True
    return None


def prompt_states(row: dict) -> dict[str, bool]:
    """Which attributes of its row a caption states, by the metric group that needs them."""
    text, drums = row["text"], row.get("drums")
    return {
        "tempo": states_tempo(text, row["bpm"]),
        "key": states_key(text, row["tonic"], row["mode"]),
        "mode": states_mode(text, row["mode"]),
        "drums": drums is not None and caption_drums(text) == drums,
        "drums_all": drums is not None,
    }


def derangement(n: int, seed: int) -> list[int]:
    """A random permutation of range(n) with no fixed point (rejection sampling, n >= 2)."""
    rng = random.Random(seed)
    while True:
        perm = list(range(n))
        rng.shuffle(perm)
        if all(i != p for i, p in enumerate(perm)):
            return perm


def compare(est: dict, row: dict) -> dict:
    """Score estimates (``tempo``, ``key`` as "D minor", ``drums``) against one row's labels."""
    key = f"{row['tonic']} {row['mode']}"
    drums = row.get("drums")
    return {
        "tempo_strict": tempo_match(est["tempo"], row["bpm"]),
        "tempo_octave": tempo_match(est["tempo"], row["bpm"], octave=True),
        "key_match": key_match(est["key"], key),
        "mode_match": parse_key(est["key"])[1] == row["mode"].lower(),
        "drums_match": None if drums is None else est["drums"] == drums,
    }


def rate(pairs: list[tuple[dict, dict, dict]], metric: str) -> dict:
    """Hits / n over (estimate, row, stated) pairs whose row states the metric's attribute."""
    test, need = METRICS[metric][1], NEEDS[metric]
    scored = [compare(est, row) for est, row, stated in pairs if stated[need]]
    hits = sum(bool(test(s)) for s in scored)
    return {"hits": hits, "n": len(scored), "rate": hits / len(scored) if scored else None}


def all_pairs_rate(
    estimates: list[dict], rows: list[dict], stated: list[dict], metric: str
) -> dict:
    """Chance rate over every (clip i, row j != i) pair: what the derangement estimates, less noisy.

    ``hits`` and ``n`` count pairs here, not clips.
    """
    pairs = [
        (est, rows[j], stated[j])
        for i, est in enumerate(estimates)
        for j in range(len(rows))
        if j != i
    ]
    return rate(pairs, metric)


def score_recordings(estimates: list[dict], rows: list[dict], stated: list[dict]) -> dict:
    """Every metric of recordings (or clips) against their own rows' labels."""
    return {m: rate(list(zip(estimates, rows, stated, strict=True)), m) for m in METRICS}


def score_generated(
    estimates: list[dict], rows: list[dict], stated: list[dict], perm: list[int]
) -> dict:
    """The ``matched``, ``shuffled`` (clip i vs row perm[i]) and ``all_pairs`` columns.

    ``estimates`` may be shorter than ``rows`` (none at all with ``--codec-only``).
    """
    n = len(estimates)
    shuffled = [(e, rows[j], stated[j]) for e, j in zip(estimates, perm[:n], strict=True)]
    return {
        "matched": score_recordings(estimates, rows[:n], stated[:n]),
        "shuffled": {m: rate(shuffled, m) for m in METRICS},
        "all_pairs": {m: all_pairs_rate(estimates, rows, stated, m) for m in METRICS},
    }


def _cell(r: dict, counts: bool = True) -> str:
    if r["rate"] is None:
        return "n/a"
    return f"{100 * r['rate']:.0f}% ({r['hits']}/{r['n']})" if counts else f"{100 * r['rate']:.0f}%"


def table(totals: dict) -> str:
    """The results as a plain-text table: one row per metric, one column per comparison."""
    cols = ("matched", "shuffled", "all_pairs", "via_autoencoder", "ceiling")
    heads = ("matched", "shuffled", "(all pairs)", "via autoencoder", "real audio")
    lines = [f"{'metric':<36}" + "".join(f"{h:>18}" for h in heads)]
    for metric, (description, _) in METRICS.items():
        # all pairs: counts are of pairs, not clips, so only the rate is shown
        cells = [_cell(totals[col][metric], counts=col != "all_pairs") for col in cols]
        lines.append(f"{description:<36}" + "".join(f"{c:>18}" for c in cells))
    return "\n".join(lines)


def curve_table(curve: list[dict], final: dict | None = None) -> str:
    """The learning curve as a markdown table: one row per snapshot, "matched / shuffled" cells.

    ``curve`` holds ``{"step", "samples_seen", "totals"}`` per snapshot; ``final`` (optional) is
    the loaded model's own ``totals``, shown as a last row.
    """
    heads = ["step", "samples seen", *(d for d, _ in METRICS.values())]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---:|" * len(heads)]

    def row(step: str, seen: str, totals: dict) -> str:
        cells = [
            f"{_cell(totals['matched'][m], False)} / {_cell(totals['shuffled'][m], False)}"
            for m in METRICS
        ]
        return "| " + " | ".join([step, seen, *cells]) + " |"

    for point in curve:
        lines.append(row(str(point["step"]), f"{point['samples_seen']:,}", point["totals"]))
    if final is not None:
        lines.append(row("model", "", final))
    return "\n".join(lines)
