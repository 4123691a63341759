"""Subject-line scoring and rewriting: deterministic rules, no model, no network.

The same rules score the candidates a producer sends and the alternatives a provider
suggests, so an online model's ideas are ranked on the same 0–100 scale as the
customer's own. They are deliberately simple and explainable — every point gained or
lost comes with a reason the dashboard can show:

=================  ==========================================================
start              90
length             30–50 characters: 0; 20–29 or 51–60: −10; 1–19 or 61–80:
                   −20; over 80: −30 (a merge tag counts as 8 characters)
spam triggers      −15 each (``free``, ``act now``, ``$$$``, ``!!!`` …), at most −45
all-caps words     −10 each (3+ letters, common acronyms excepted), at most −30
punctuation        more than one ``!``: −10; more than one ``?``: −10
emoji              one: +2; two: 0; more: −5 for each beyond two, at most −15
personalisation    a merge tag (``{{ name }}``, ``*|FNAME|*``): +5
numbers            a digit: +3
=================  ==========================================================

The result is clamped to 0–100; an empty subject scores 0.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

BASE_SCORE = 90
IDEAL_MIN = 30
IDEAL_MAX = 50
MERGE_TAG_WIDTH = 8

SPAM_TRIGGERS: tuple[str, ...] = (
    "free", "act now", "guarantee", "guaranteed", "winner", "cash", "urgent",
    "limited time", "click here", "buy now", "order now", "call now", "risk-free",
    "no cost", "100%", "earn money", "make money", "double your", "cheap",
    "lowest price", "congratulations", "once in a lifetime", "miracle", "$$$", "!!!",
)
ACRONYMS: frozenset[str] = frozenset({
    "API", "ASAP", "CEO", "CSS", "CTA", "CTO", "DIY", "FAQ", "GDPR", "HTML", "NYC",
    "PDF", "ROI", "SAAS", "SEO", "SMS", "SQL", "USA", "USB", "B2B", "B2C",
})

_SPAM_PENALTY, _SPAM_CAP = 15, 45
_CAPS_PENALTY, _CAPS_CAP = 10, 30
_PUNCT_PENALTY = 10
_EMOJI_BONUS, _EMOJI_PENALTY, _EMOJI_CAP = 2, 5, 15
_PERSONAL_BONUS = 5
_NUMBER_BONUS = 3

_MERGE_TAG = re.compile(r"\{\{\s*[A-Za-z_][\w.]*\s*\}\}|\*\|[A-Za-z0-9_]+\|\*")
_EMOJI = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF]")
_WORD = re.compile(r"[^\W\d_]+")
_PERSONAL_TAG = "{{ name }}"
_REFRAME = "This week: "


def _phrase_pattern(phrase: str) -> re.Pattern[str]:
    head = r"(?<!\w)" if phrase[0].isalnum() else ""
    tail = r"(?!\w)" if phrase[-1].isalnum() else ""
    return re.compile(head + re.escape(phrase) + tail, re.IGNORECASE)


# Longest first, so "risk-free" is found as itself and not also as "free".
_SPAM_PATTERNS = [(p, _phrase_pattern(p)) for p in sorted(SPAM_TRIGGERS, key=len, reverse=True)]


def rendered_length(subject: str) -> int:
    """Characters a reader sees: merge tags count as ``MERGE_TAG_WIDTH`` each."""
    return len(_MERGE_TAG.sub("x" * MERGE_TAG_WIDTH, subject).strip())


def has_merge_tag(subject: str) -> bool:
    return _MERGE_TAG.search(subject) is not None


def find_spam_triggers(subject: str) -> list[str]:
    """The spam trigger phrases in ``subject``, in the order they appear."""
    text = _MERGE_TAG.sub(" ", subject)
    found: list[tuple[int, str]] = []
    for phrase, pattern in _SPAM_PATTERNS:
        for match in pattern.finditer(text):
            found.append((match.start(), phrase))
        text = pattern.sub(lambda m: " " * len(m.group()), text)
    return [phrase for _, phrase in sorted(found)]


def caps_words(subject: str) -> list[str]:
    """Shouted words: 3+ letters, all upper case, not a known acronym."""
    text = _MERGE_TAG.sub(" ", subject)
    return [w for w in _WORD.findall(text)
            if len(w) >= 3 and w.isupper() and w.upper() not in ACRONYMS]


def count_emoji(subject: str) -> int:
    return len(_EMOJI.findall(subject))


@dataclass(frozen=True)
class SubjectScore:
    """A subject's score (0–100) with the reason for every adjustment."""

    subject: str
    score: int
    length: int
    reasons: tuple[str, ...]
    adjustments: Mapping[str, int]
    spam_triggers: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "score": self.score,
            "length": self.length,
            "reasons": list(self.reasons),
            "adjustments": dict(self.adjustments),
            "spamTriggers": list(self.spam_triggers),
        }


def _length_adjustment(length: int) -> tuple[int, str]:
    ideal = f"{IDEAL_MIN}–{IDEAL_MAX}"
    if IDEAL_MIN <= length <= IDEAL_MAX:
        return 0, f"length {length} is within the ideal {ideal} characters"
    distance = IDEAL_MIN - length if length < IDEAL_MIN else length - IDEAL_MAX
    penalty = -10 if distance <= 10 else -20 if distance <= 30 else -30
    kind = "short" if length < IDEAL_MIN else "long"
    return penalty, f"length {length} is {kind}; aim for {ideal} characters"


def score_subject(subject: str) -> SubjectScore:
    """Score one subject line (see the module docstring for the rules)."""
    length = rendered_length(subject)
    if length == 0:
        return SubjectScore(subject, 0, 0, ("empty subject",), {"empty": -BASE_SCORE})
    reasons: list[str] = []
    adjust: dict[str, int] = {}

    delta, reason = _length_adjustment(length)
    reasons.append(reason)
    if delta:
        adjust["length"] = delta

    triggers = find_spam_triggers(subject)
    if triggers:
        adjust["spam"] = -min(_SPAM_PENALTY * len(triggers), _SPAM_CAP)
        reasons.extend(f"spam trigger {t!r}" for t in triggers)

    shouted = caps_words(subject)
    if shouted:
        adjust["caps"] = -min(_CAPS_PENALTY * len(shouted), _CAPS_CAP)
        reasons.extend(f"all-caps word {w!r}" for w in shouted)

    visible = _MERGE_TAG.sub(" ", subject)
    punct = 0
    for mark, name in (("!", "exclamation"), ("?", "question")):
        n = visible.count(mark)
        if n > 1:
            punct -= _PUNCT_PENALTY
            reasons.append(f"{n} {name} marks; use at most one")
    if punct:
        adjust["punctuation"] = punct

    emoji = count_emoji(subject)
    if emoji == 1:
        adjust["emoji"] = _EMOJI_BONUS
        reasons.append("one emoji adds a visual cue")
    elif emoji > 2:
        adjust["emoji"] = -min(_EMOJI_PENALTY * (emoji - 2), _EMOJI_CAP)
        reasons.append(f"{emoji} emoji; use at most two")

    if has_merge_tag(subject):
        adjust["personalization"] = _PERSONAL_BONUS
        reasons.append("personalised with a merge tag")

    if re.search(r"\d", visible):
        adjust["numbers"] = _NUMBER_BONUS
        reasons.append("contains a number")

    score = max(0, min(100, BASE_SCORE + sum(adjust.values())))
    return SubjectScore(subject, score, length, tuple(reasons), adjust, tuple(triggers))


def rank_subjects(subjects: Iterable[str]) -> list[SubjectScore]:
    """Score each subject; best first, ties in the given order."""
    scored = [score_subject(s) for s in subjects]
    order = sorted(range(len(scored)), key=lambda i: (-scored[i].score, i))
    return [scored[i] for i in order]


# --- rewriting -----------------------------------------------------------------------
def _lower_first(text: str) -> str:
    word = text.split(" ", 1)[0]
    if len(word) > 1 and word[0].isupper() and word[1:].islower():
        return text[0].lower() + text[1:]
    return text


def _fit(text: str, limit: int = IDEAL_MAX) -> str:
    """Cut ``text`` at a word boundary so its rendered length is at most ``limit``."""
    if rendered_length(text) <= limit:
        return text
    words = text.split(" ")
    out = words[0]
    for word in words[1:]:
        if rendered_length(f"{out} {word}") > limit:
            break
        out = f"{out} {word}"
    return out.rstrip(" ,;:-–—|")


def clean_subject(subject: str) -> str:
    """``subject`` without what the score penalises: spam phrases, shouting, runs of
    ``!``/``?``, extra emoji; cut to at most 50 characters. May return ``""``."""
    tags: list[str] = []

    def protect(match: re.Match[str]) -> str:
        tags.append(match.group())
        return f"\x00{len(tags) - 1}\x00"

    text = _MERGE_TAG.sub(protect, subject)
    for _, pattern in _SPAM_PATTERNS:
        text = pattern.sub(" ", text)
    text = re.sub(r"([!?])[!?]+", r"\1", text)
    first_bang = text.find("!")
    if first_bang >= 0:
        text = text[: first_bang + 1] + text[first_bang + 1:].replace("!", "")
    emoji_seen = 0

    def keep_one_emoji(match: re.Match[str]) -> str:
        nonlocal emoji_seen
        emoji_seen += 1
        return match.group() if emoji_seen == 1 else ""

    text = _EMOJI.sub(keep_one_emoji, text).replace("\ufe0f", "")
    shouted = set(caps_words(text))
    text = _WORD.sub(lambda m: m.group().lower() if m.group() in shouted else m.group(), text)
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s+([,.!?:;])", r"\1", text)
    text = re.sub(r"([,:;])(?=[,:;])", "", text)
    text = text.strip(" ,;:-–—|")
    text = re.sub(r"\x00(\d+)\x00", lambda m: tags[int(m.group(1))], text)
    if text and text[0].isalpha():
        text = text[0].upper() + text[1:]
    return _fit(text) if text else ""


def rewrite_subject(subject: str) -> list[str]:
    """Up to three deterministic rewrites: cleaned, personalised, reframed."""
    base = clean_subject(subject)
    if not base:
        return []
    out = [base]
    if not has_merge_tag(base):
        out.append(_fit(f"{_PERSONAL_TAG}, {_lower_first(base)}"))
    if not has_merge_tag(base) and "week" not in base.lower():
        out.append(_fit(f"{_REFRAME}{_lower_first(base)}"))
    return _dedupe(out, ())


def _dedupe(items: Sequence[str], exclude: Iterable[str]) -> list[str]:
    seen = {" ".join(e.lower().split()) for e in exclude}
    out: list[str] = []
    for item in items:
        key = " ".join(item.lower().split())
        if key and key not in seen:
            seen.add(key)
            out.append(item)
    return out


def offline_alternatives(subjects: Sequence[str], count: int = 3) -> list[str]:
    """``count`` rewrites of the best candidates, none equal to a candidate."""
    pool: list[str] = []
    for scored in rank_subjects(subjects):
        pool.extend(rewrite_subject(scored.subject))
    return _dedupe(pool, subjects)[:count]
