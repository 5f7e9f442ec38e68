"""A small synthetic world of text, generated deterministically from a seed.

Why a synthetic world: every lesson and test in bertctl needs data that (a) needs no
download, (b) a tiny model learns in minutes on a CPU, and (c) has *known* structure, so
that we can check what a model learned. Here every word's part of speech is known, every
label follows from a rule, two words are ambiguous on purpose ("apple": fruit/company,
"bank": river/money), and a second invented language ("xx") renders the very same
content with other words and another word order.

How it works: sentences are written as *chunk specs*, e.g.
``"S:Mia | V:bought | O:a ripe apple | X:at the market | P:."``. The role letters
(T time, S subject, Q question word, O object, X other, V verb group, C conjunction,
P final punctuation) let the "xx" renderer reorder a clause to subject-object-verb,
move adjectives after their noun and turn prepositions into postpositions. A word may
carry its tag explicitly ("apple/PROPN" is the company); otherwise the lexicon knows it.

Content is drawn from a random stream that does not depend on the language, so
``World(s, "en")`` and ``World(s, "xx")`` produce parallel data with identical labels:
fine-tune on English, evaluate zero-shot on "xx".
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from pathlib import Path

from bertctl.errors import BertctlError

LANGUAGES = ("en", "xx")
Token = tuple[str, str]  # (word, UPOS tag)

# ----------------------------------------------------------------------- the lexicon

FEMALE = ("Mia", "Anna", "Lena", "Sara", "Nora", "Emma", "Lucy", "Ruth", "Ella", "Zoe")
MALE = ("Tom", "Ben", "Sam", "Leo", "Max", "Jack", "Omar", "Paul", "Noah", "Adam")
TOWNS = ("Oakdale", "Riverton", "Millbrook", "Eastwick", "Stonebridge", "Greenfield", "Westport",
         "Hillcrest")
COMPANIES = ("apple", "orbit", "nimbus")  # lowercase on purpose: "apple" the company
# must look exactly like "apple" the fruit, or the ambiguity would be trivial.
ROLES = ("teacher", "farmer", "student", "doctor", "baker", "driver", "nurse", "painter",
         "pilot", "writer", "chef", "singer", "builder", "lawyer")
TRAITS = ("young", "old", "tall", "quiet", "busy", "clever", "shy", "friendly")
VEHICLES = ("bus", "train", "car", "bike", "boat", "taxi")
TIMES = ("one morning", "one evening", "on Monday", "on Sunday", "last week")
RELATIVES = ("friend", "brother", "sister", "mother", "father", "cousin", "neighbor")
FEEL_GOOD = ("happy", "glad", "proud", "cheerful")
FEEL_BAD = ("sad", "angry", "upset", "worried")
GOOD = ("good", "great", "nice", "lovely")  # general sentiment words, any topic
BAD = ("bad", "awful", "terrible", "poor")
FRUITS = ("apple", "pear", "plum", "peach", "orange", "lemon", "mango", "melon", "cherry")
DEVICES = ("phone", "laptop", "tablet", "camera", "radio", "printer")
GAMES = ("tennis", "football", "hockey", "golf", "basketball", "rugby")
MASS = frozenset(GAMES + ("money",))  # nouns used without an article or adjective
ANTONYMS = {"big": "small", "small": "big", "old": "new", "new": "old", "ripe": "unripe",
            "unripe": "ripe", "cheap": "expensive", "expensive": "cheap"}
OPPOSITE_VERBS = {"buy": ("sell", "sold"), "sell": ("buy", "bought"),
                  "open": ("close", "closed"), "close": ("open", "opened")}


@dataclass(frozen=True)
class Topic:
    """One kind of story: where people go, what they do there, and how it turns out."""

    name: str
    places: tuple[tuple[str, str], ...]  # (preposition used when there, place noun)
    actions: tuple[tuple[str, str, tuple[str, ...]], ...]  # (base, past, objects it takes)
    adjectives: tuple[str, ...]  # neutral describing words for the objects
    hypernym: str  # NLI entailment: "a ripe apple" -> "a fruit"
    judged: tuple[str, ...]  # what the outcome/sentiment sentences talk about
    good: tuple[str, ...]
    bad: tuple[str, ...]


TOPICS = (
    Topic("food", (("at", "market"), ("in", "orchard"), ("in", "kitchen"), ("on", "farm")),
          (("buy", "bought", FRUITS), ("sell", "sold", FRUITS), ("pick", "picked", FRUITS),
           ("eat", "ate", FRUITS)),
          ("big", "small", "ripe", "unripe", "red", "green"), "fruit", FRUITS,
          ("sweet", "juicy", "fresh", "delicious"), ("sour", "rotten", "bitter", "dry")),
    Topic("technology", (("at", "store"), ("in", "office"), ("at", "shop"), ("in", "lab")),
          (("buy", "bought", DEVICES), ("sell", "sold", DEVICES), ("test", "tested", DEVICES),
           ("fix", "fixed", DEVICES), ("charge", "charged", DEVICES)),
          ("new", "old", "cheap", "expensive", "black", "white"), "device", DEVICES,
          ("fast", "reliable", "light", "smart"), ("slow", "broken", "heavy", "noisy")),
    Topic("sports", (("at", "stadium"), ("in", "park"), ("at", "gym"), ("on", "field")),
          (("play", "played", GAMES), ("watch", "watched", GAMES)),
          (), "sport", ("match", "game"),
          ("exciting", "thrilling", "fair"), ("boring", "dull", "unfair")),
    Topic("travel", (("near", "river"), ("near", "lake"), ("on", "beach"),
                     ("on", "mountain"), ("in", "village"), ("in", "forest")),
          (("rent", "rented", ("boat", "bike", "tent")),
           ("buy", "bought", ("map", "ticket", "hat")),
           ("carry", "carried", ("bag", "tent", "map"))),
          ("big", "small", "old", "new", "cheap", "expensive"), "something", ("weather", "day"),
          ("sunny", "warm", "calm", "clear"), ("cold", "rainy", "windy", "grey")),
    Topic("finance", (("at", "bank"),),
          (("open", "opened", ("account", "card")), ("close", "closed", ("account", "card")),
           ("get", "got", ("loan", "card")), ("save", "saved", ("money",))),
          ("new", "old", "big", "small"), "something", ("staff", "service"),
          ("helpful", "kind", "polite"), ("rude", "careless", "unhelpful")),
)
TOPIC_NAMES = tuple(t.name for t in TOPICS)
_BY_NAME = {t.name: t for t in TOPICS}

# The two ambiguous words and the label of each sense, in the order sense_sentences uses.
SENSES = {"apple": ("fruit", "company"), "bank": ("river", "money")}


def _build_lexicon() -> dict[str, str]:
    """word -> UPOS for every English word the templates can produce (except "an").

    Built from the tables above plus the few function words templates write literally;
    a word may have one tag only (the company "apple" is tagged inline as PROPN).
    """
    words: dict[str, tuple[str, ...]] = {
        "PROPN": FEMALE + MALE + TOWNS + COMPANIES[1:] + ("Monday", "Sunday"),
        "NOUN": ROLES + VEHICLES + RELATIVES + FRUITS + DEVICES + GAMES
        + tuple(p for t in TOPICS for _, p in t.places)
        + tuple(o for t in TOPICS for *_, objs in t.actions for o in objs)
        + tuple(j for t in TOPICS for j in t.judged) + ("fruit", "device", "sport")
        + ("morning", "evening", "week", "year", "tree", "knife", "engineers",
           "team", "goals", "boats", "hours", "shares"),
        "VERB": tuple(v for t in TOPICS for b, p, _ in t.actions for v in (b, p))
        + ("go", "went", "live", "lived", "worked", "feel", "felt", "like", "liked", "grew",
           "peeled", "made", "released", "designed", "scored", "sat", "walked", "rose",
           "won", "lost", "told"),
        "ADJ": TRAITS + FEEL_GOOD + FEEL_BAD + GOOD + BAD
        + tuple(a for t in TOPICS for a in t.adjectives + t.good + t.bad)
        + ("sharp", "last"),
        "DET": ("a", "the", "that"),
        "PRON": ("she", "he", "her", "his", "it", "someone", "something", "what", "who"),
        "AUX": ("was", "did"),
        "PART": ("not",),
        "ADP": ("to", "at", "in", "on", "from", "of", "with", "by", "near", "as", "about",
                "against", "around", "for"),
        "CCONJ": ("and", "but"),
        "NUM": ("one", "two", "three"),
        "ADV": ("later", "very", "home", "also", "where", "how"),
        "PUNCT": (".", ",", "?"),
    }
    lexicon: dict[str, str] = {}
    for tag, group in words.items():
        for word in group:
            if lexicon.setdefault(word, tag) != tag:
                raise AssertionError(f"{word!r} tagged both {lexicon[word]} and {tag}")
    return lexicon


LEXICON = _build_lexicon()
CONTENT_TAGS = frozenset({"NOUN", "PROPN", "VERB", "ADJ", "ADV"})
_FUNCTION_TAGS = frozenset({"DET", "PRON", "AUX", "PART", "ADP", "CCONJ", "NUM"})


def _invent_xx_lexicon() -> dict[str, str]:
    """English word -> invented "xx" word, 1:1 and the same for every seed.

    Words are built from consonant-vowel syllables (function words short, content words
    longer) and never coincide with a word of the English world. They never end in "e",
    which keeps most accidental real-English look-alikes ("base", "robe") out.
    """
    rng = random.Random("bertctl-world-xx-lexicon-v1")
    consonants, vowels = "bdfgklmnprstvz", "aeiou"
    taken = {w.lower() for w in LEXICON} | {"an"}
    mapping = {}
    for word in sorted(LEXICON):
        if LEXICON[word] == "PUNCT":
            mapping[word] = word
            continue
        syllables = 1 if LEXICON[word] in _FUNCTION_TAGS else rng.choice((2, 2, 3))
        for attempt in range(1000):
            n = syllables + attempt // 50  # widen when short words run out
            candidate = "".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(n))
            candidate = candidate[:-1] + rng.choice("aiou")
            if candidate not in taken:
                break
        taken.add(candidate)
        mapping[word] = candidate.capitalize() if word[0].isupper() else candidate
    return mapping


XX_LEXICON = _invent_xx_lexicon()
_XX_TAGS = {XX_LEXICON[w]: tag for w, tag in LEXICON.items()}

# ----------------------------------------------------------------------- rendering

# Clause order in "xx": time, subject, object/question word, other phrases, verb group.
_XX_RANK = {"T": 0, "S": 1, "Q": 2, "O": 2, "X": 3, "V": 4, "P": 5}


def _parse(spec: str) -> list[tuple[str, list[Token]]]:
    """Turn "S:Mia | V:bought | ..." into [(role, [(word, tag), ...]), ...]."""
    chunks = []
    for part in spec.split("|"):
        role, _, text = part.strip().partition(":")
        tokens = []
        for word in text.split():
            if "/" in word:
                word, tag = word.split("/")
            elif word in LEXICON:
                tag = LEXICON[word]
            else:
                raise AssertionError(f"world template uses {word!r}, which is not in LEXICON")
            tokens.append((word, tag))
        chunks.append((role, tokens))
    return chunks


def _fix_articles(tokens: list[Token]) -> list[Token]:
    """English "a" becomes "an" before a vowel; done late so templates can always say "a"."""
    return [("an", tag) if word == "a" and i + 1 < len(tokens) and tokens[i + 1][0][0] in "aeiou"
            else (word, tag) for i, (word, tag) in enumerate(tokens)]


def _xx_chunk(tokens: list[Token]) -> list[Token]:
    """Within a phrase: adjectives follow their noun, a leading preposition goes last."""
    out, pending = [], []
    for word, tag in tokens:
        if tag == "ADJ":
            pending.append((word, tag))
            continue
        if tag in ("NOUN", "PROPN"):
            out += [(word, tag)] + pending
        else:
            out += pending + [(word, tag)]
        pending = []
    out += pending
    if out and out[0][1] == "ADP":
        trailing = 1 if out[-1][1] == "PUNCT" else 0
        cut = len(out) - trailing
        out = out[1:cut] + [out[0]] + out[cut:]
    return out


def _xx_order(chunks: list[tuple[str, list[Token]]]) -> list[tuple[str, list[Token]]]:
    """Reorder every clause (clauses are split at C chunks) to subject-object-verb."""
    out, clause = [], []
    for role, tokens in chunks + [("C", [])]:
        if role == "C":
            out += sorted(clause, key=lambda chunk: _XX_RANK[chunk[0]]) + [(role, tokens)]
            clause = []
        else:
            clause.append((role, _xx_chunk(tokens)))
    return out


def _find(words: list[str], part: list[str]) -> int:
    """Index of the first occurrence of `part` inside `words`, or -1."""
    for i in range(len(words) - len(part) + 1):
        if words[i:i + len(part)] == part:
            return i
    return -1

# ----------------------------------------------------------------------- content


def _takes_adj(noun: str) -> bool:
    return noun not in MASS and noun != "something"


def _np(noun: str, adj: str | None = None, det: str = "a") -> str:
    """A noun phrase: "a ripe apple", "tennis" (mass nouns take no article), "something"."""
    if not _takes_adj(noun):
        return noun
    return f"{det} {adj} {noun}" if adj else f"{det} {noun}"


def _pick(rng: random.Random, options: tuple[str, ...]) -> str:
    """Like rng.choice, but "apple" is picked a third of the time when it is an option,
    so both senses are frequent enough for a small model to learn them."""
    if "apple" in options and rng.random() < 1 / 3:
        return "apple"
    return rng.choice(options)


def _company(rng: random.Random) -> str:
    return _pick(rng, COMPANIES) + "/PROPN"


def _balanced(rng: random.Random, labels: tuple, n: int) -> list:
    """n labels, balanced within each block of len(labels), in random order."""
    out: list = []
    while len(out) < n:
        block = list(labels)
        rng.shuffle(block)
        out += block
    return out[:n]


@dataclass
class Story:
    """A document as specs, plus questions it answers: (question, answer, sentence index)."""

    name: str
    topic: Topic
    sentences: list[str]
    questions: list[tuple[str, str, int]]

    def words(self) -> set[str]:
        return {w for s in self.sentences for _, tokens in _parse(s) for w, _ in tokens}


def _story(rng: random.Random) -> Story:
    """One short story in a fixed script, so sentence order is learnable:
    introduce a person -> they go somewhere -> act on an object -> (detail) ->
    outcome -> how they felt -> (closing). Later sentences refer back by pronoun."""
    topic = rng.choice(TOPICS)
    female = rng.random() < 0.5
    name = rng.choice(FEMALE if female else MALE)
    she, her = ("she", "her") if female else ("he", "his")
    good = rng.random() < 0.5
    s: list[str] = []
    qs: list[tuple[str, str, int]] = []

    def who() -> str:
        return name if rng.random() < 0.25 else she

    town, role = rng.choice(TOWNS), rng.choice(ROLES)
    if rng.random() < 0.5:
        s.append(f"S:{name} | V:was | X:a {rng.choice(TRAITS)} {role} | X:from {town} | P:.")
        qs.append((f"Q:where | V:was | S:{name} | X:from | P:?", town, 0))
    else:
        s.append(f"S:{name} | V:lived | X:in {town} | C:and | V:worked | X:as a {role} | P:.")
        qs.append((f"Q:where | V:did | S:{name} | V:live | P:?", town, 0))

    prep, place = rng.choice(topic.places)
    time = f"T:{rng.choice(TIMES)} , | " if rng.random() < 0.6 else ""
    vehicle = rng.choice(VEHICLES) if rng.random() < 0.5 else None
    by = f" | X:by {vehicle}" if vehicle else ""
    s.append(f"{time}S:{who()} | V:went | X:to the {place}{by} | P:.")
    qs.append((f"Q:where | V:did | S:{name} | V:go | P:?", f"the {place}", 1))
    qs.append((f"Q:who | V:went | X:to the {place} | P:?", name, 0))
    if vehicle:
        qs.append((f"Q:how | V:did | S:{name} | V:go | X:to the {place} | P:?", vehicle, 1))

    base, past, objects = rng.choice(topic.actions)
    obj = _pick(rng, objects)
    adj = rng.choice(topic.adjectives) if topic.adjectives and obj not in MASS else None
    s.append(f"S:{who()} | V:{past} | O:{_np(obj, adj)} | X:{prep} the {place} | P:.")
    qs.append((f"Q:what | V:did | S:{name} | V:{base} | P:?", _np(obj, adj), 2))

    if rng.random() < 0.7:
        detail, qa = _detail(rng, topic, obj, place, she, her, town)
        s.append(detail)
        if qa:
            qs.append((*qa, len(s) - 1))

    judged = obj if topic.name in ("food", "technology") else topic.judged[0]
    verdict = rng.sample(topic.good if good else topic.bad, 2)
    if topic.name == "travel":
        verdict_text = f"{verdict[0]} and {verdict[1]}"
        s.append(f"S:the {judged} | V:was | X:{verdict_text} | P:.")
    elif topic.name == "sports":
        verdict_text = verdict[0]
        s.append(f"S:the {judged} | V:was | X:{verdict_text} | C:and | S:{her} team"
                 f" | V:{'won' if good else 'lost'} | P:.")
    else:
        verdict_text = verdict[0]
        very = "very " if rng.random() < 0.3 else ""
        s.append(f"S:the {judged} | V:was | X:{very}{verdict_text} | P:.")
    qs.append((f"Q:how | V:was | S:the {judged} | P:?", verdict_text, len(s) - 1))

    feeling = rng.choice(FEEL_GOOD if good else FEEL_BAD)
    if rng.random() < 0.5:
        s.append(f"S:{name} | V:felt | X:{feeling} | P:.")
    else:
        s.append(f"S:{she} | V:was | X:very {feeling} | P:.")
    qs.append((f"Q:how | V:did | S:{name} | V:feel | P:?", feeling, len(s) - 1))

    if rng.random() < 0.5:
        relative = rng.choice(RELATIVES)
        s.append(rng.choice((f"T:later , | S:{she} | V:went | X:home | P:.",
                             f"S:{she} | V:told | O:{her} {relative} | X:about it | P:.")))
    return Story(name, topic, s, qs)


def _detail(rng, topic, obj, place, she, her, town) -> tuple[str, tuple[str, str] | None]:
    """A topic-specific middle sentence (and maybe a question it answers). It carries the
    sense-typical contexts of the ambiguous words: fruit trees, apple the company,
    river banks, share prices."""
    co = _company(rng)
    few, tree = rng.choice(("two", "three")), rng.choice(("old", "tall"))
    if topic.name == "food":
        return rng.choice((f"S:the {obj} | V:grew | X:on a {tree} tree | P:.",
                           f"S:{she} | V:peeled | O:the {obj} | X:with a sharp knife | P:.")), None
    if topic.name == "technology":
        verb, spec = rng.choice((
            ("made", f"S:the {obj} | V:was made | X:by {co} | P:."),
            ("released", f"S:{co} | V:released | O:the {obj} | X:last year | P:."),
            ("designed", f"S:engineers at {co} | V:designed | O:the {obj} | P:.")))
        return spec, (f"Q:who | V:{verb} | O:the {obj} | P:?", co)
    if topic.name == "sports":
        other = rng.choice([t for t in TOWNS if t != town])
        return rng.choice((f"S:{her} team | V:played | X:against a team | X:from {other} | P:.",
                           f"S:{she} | V:scored | O:{few} goals | P:.")), None
    if topic.name == "travel" and place in ("river", "lake"):
        return rng.choice((f"S:{she} | V:sat | X:on the bank of the {place} | P:.",
                           f"S:{she} | V:watched | O:the boats | X:from the bank | P:.")), None
    if topic.name == "travel":
        return f"S:{she} | V:walked | X:around the {place} | X:for {few} hours | P:.", None
    return rng.choice((f"S:{she} | V:also bought | O:shares of {co} | P:.",
                       f"T:that week , | S:shares of {co} | V:rose | P:.")), None


@dataclass(frozen=True)
class Event:
    """One "someone did something to a thing somewhere" fact; NLI and similarity edit it."""

    subj: str
    female: bool
    topic: Topic
    verb: tuple[str, str]  # (base, past)
    obj: str
    adj: str | None
    place: tuple[str, str] | None
    companion: str | None = None  # e.g. "her brother"
    time: str | None = None  # e.g. "in the evening"
    negated: bool = False

    def spec(self, front_place: bool = False) -> str:
        verb = f"did not {self.verb[0]}" if self.negated else self.verb[1]
        parts = [f"S:{self.subj}", f"V:{verb}", f"O:{_np(self.obj, self.adj)}"]
        if self.place:
            where = f"{self.place[0]} the {self.place[1]}"
            parts = [f"T:{where} ,"] + parts if front_place else parts + [f"X:{where}"]
        parts += [f"X:{x}" for x in (self.companion, self.time) if x]
        return " | ".join(parts + ["P:."])


def _event(rng: random.Random, topic: Topic | None = None) -> Event:
    topic = topic or rng.choice(TOPICS)
    female = rng.random() < 0.5
    base, past, objects = rng.choice(topic.actions)
    obj = _pick(rng, objects)
    adj = (rng.choice(topic.adjectives)
           if topic.adjectives and _takes_adj(obj) and rng.random() < 0.7 else None)
    return Event(rng.choice(FEMALE if female else MALE), female, topic, (base, past), obj, adj,
                 rng.choice(topic.places))


def _companion(rng, e: Event) -> str:
    return f"with {'her' if e.female else 'his'} {rng.choice(RELATIVES)}"


# NLI edits: each returns the edited event, or None where it does not apply.
# ENTAIL edits keep the hypothesis true; _SAFE ones are applied *before* any label's edit
# (so they cannot undo it, e.g. drop a companion that a neutral edit just added).
_ENTAIL = {
    "drop_adj": lambda rng, e: replace(e, adj=None) if e.adj else None,
    "drop_place": lambda rng, e: replace(e, place=None) if e.place else None,
    "drop_companion": lambda rng, e: replace(e, companion=None) if e.companion else None,
    "drop_time": lambda rng, e: replace(e, time=None) if e.time else None,
    "hypernym": lambda rng, e: replace(e, obj=e.topic.hypernym,
                                       adj=None if e.topic.hypernym == "something" else e.adj),
    "someone": lambda rng, e: replace(e, subj="someone"),
}
_SAFE = ("drop_place", "hypernym")
_CONTRADICT = {
    "negate": lambda rng, e: replace(e, negated=True),
    "antonym": lambda rng, e: replace(e, adj=ANTONYMS[e.adj]) if e.adj in ANTONYMS else None,
    "opposite_verb": lambda rng, e: (replace(e, verb=OPPOSITE_VERBS[e.verb[0]])
                                     if e.verb[0] in OPPOSITE_VERBS else None),
}
_NEUTRAL = {
    "add_companion": lambda rng, e: (None if e.companion
                                     else replace(e, companion=_companion(rng, e))),
    "add_time": lambda rng, e: None if e.time else replace(
        e, time=rng.choice(("in the morning", "in the evening"))),
    "add_adj": lambda rng, e: (replace(e, adj=rng.choice(e.topic.adjectives))
                               if not e.adj and e.topic.adjectives and _takes_adj(e.obj) else None),
    "other_person": lambda rng, e: replace(e, subj=rng.choice(
        [n for n in (FEMALE if e.female else MALE) if n != e.subj])),
}
_NLI_EDITS = {"entailment": _ENTAIL, "contradiction": _CONTRADICT, "neutral": _NEUTRAL}


def _apply_some(rng, edits: dict, e: Event) -> Event:
    """Apply one applicable edit from `edits` (in random order); there always is one."""
    for key in rng.sample(sorted(edits), len(edits)):
        edited = edits[key](rng, e)
        if edited is not None and edited != e:
            return edited
    raise AssertionError("no NLI edit applies")


def _nli_pair(rng: random.Random, label: str) -> tuple[str, str]:
    """Premise event and a hypothesis made by rule; sometimes a label-preserving extra edit
    (dropping a phrase, using the hypernym) is added so length alone does not give it away."""
    e = _event(rng)
    if rng.random() < 0.3:
        e = replace(e, companion=_companion(rng, e))
    if rng.random() < 0.3:
        e = replace(e, time=rng.choice(("in the morning", "in the evening")))
    h = e
    if rng.random() < 0.4:
        h = _ENTAIL[rng.choice(_SAFE)](rng, h) or h
    return e.spec(), _apply_some(rng, _NLI_EDITS[label], h).spec()


_SIM_WEIGHTS = {"subj": 1.0, "verb": 1.25, "obj": 1.25, "adj": 0.5, "place": 1.0}  # sum 5


def _similar_pair(rng: random.Random) -> tuple[Event, Event, float]:
    """Two events sharing a random number of slots; score = weight of the equal slots
    (so chance coincidences count too, and the score always matches the text)."""
    a = _event(rng)
    n_shared = rng.choices(range(6), weights=(2, 2, 2, 2, 2, 1))[0]
    shared = rng.sample(sorted(_SIM_WEIGHTS), n_shared)
    b = _event(rng, None if not shared and rng.random() < 0.5 else a.topic)
    if "subj" in shared:
        b = replace(b, subj=a.subj, female=a.female)
    if b.topic == a.topic:
        for slot in set(shared) - {"subj"}:
            b = replace(b, **{slot: getattr(a, slot)})
        takes = next(objs for base, _, objs in b.topic.actions if base == b.verb[0])
        if b.obj not in takes:  # keep the verb-object pair sensible ("rented a boat")
            b = replace(b, obj=a.obj if a.obj in takes else _pick(rng, takes))
    if not _takes_adj(b.obj):
        b = replace(b, adj=None)
    score = sum(w for slot, w in _SIM_WEIGHTS.items() if getattr(a, slot) == getattr(b, slot))
    return a, b, round(score, 2)


def _sentiment_spec(rng: random.Random, positive: bool) -> str:
    """A judgement whose label needs more than one word a good part of the time:
    negation ("was not slow"), contrast ("sour but ... sweet"), "did not like"."""
    topic = rng.choice(TOPICS)
    thing, other = rng.sample(topic.judged, 2)
    good, bad = topic.good + GOOD, topic.bad + BAD
    want, avoid = (good, bad) if positive else (bad, good)
    form = rng.random()
    if form < 0.4:
        very = "very " if rng.random() < 0.3 else ""
        return f"S:the {thing} | V:was | X:{very}{rng.choice(want)} | P:."
    if form < 0.6:
        return f"S:the {thing} | V:was not | X:{rng.choice(avoid)} | P:."
    if form < 0.8:
        return (f"S:the {thing} | V:was | X:{rng.choice(avoid)} | C:but | S:the {other}"
                f" | V:was | X:{rng.choice(want)} | P:.")
    name = rng.choice(FEMALE + MALE)
    return f"S:{name} | V:{'liked' if positive else 'did not like'} | O:the {thing} | P:."


def _sense_spec(rng: random.Random, word: str, sense: str) -> str:
    """A sentence using `word` in `sense`, built from the same phrases the stories use."""
    name, device = rng.choice(FEMALE + MALE), rng.choice(DEVICES)
    if word == "apple" and sense == "fruit":
        return rng.choice((
            f"S:{name} | V:ate | O:a {rng.choice(('ripe', 'red'))} apple | X:in the orchard | P:.",
            f"S:{name} | V:picked | O:a apple | X:from a tall tree | P:.",
            f"S:{name} | V:peeled | O:the apple | X:with a sharp knife | P:.",
            f"S:the apple | V:was | X:{rng.choice(('sweet', 'juicy', 'sour'))} | P:."))
    if word == "apple":
        return rng.choice((
            f"S:apple/PROPN | V:released | O:a {rng.choice(('new', 'cheap'))} {device} | P:.",
            f"S:{name} | V:also bought | O:shares of apple/PROPN | P:.",
            f"S:engineers at apple/PROPN | V:designed | O:the {device} | P:.",
            "T:that week , | S:shares of apple/PROPN | V:rose | P:."))
    if sense == "river":
        return rng.choice((
            f"S:{name} | V:sat | X:on the bank of the {rng.choice(('river', 'lake'))} | P:.",
            f"S:{name} | V:watched | O:the boats | X:from the bank | P:.",
            f"S:{name} | V:walked | X:around the bank of the river | P:."))
    return rng.choice((
        f"S:{name} | V:opened | O:a new account | X:at the bank | P:.",
        f"S:{name} | V:got | O:a {rng.choice(('big', 'small'))} loan | X:at the bank | P:.",
        f"S:{name} | V:saved | O:money | X:at the bank | P:.",
        f"S:the staff | X:at the bank | V:was | X:{rng.choice(('helpful', 'rude'))} | P:."))

# ----------------------------------------------------------------------- DNA

DNA_MOTIF = "GATA"
GC_THRESHOLD = 0.6


def gc_content(sequence: str) -> float:
    return sum(base in "GC" for base in sequence) / max(len(sequence), 1)


def dna_rule(sequence: str) -> int:
    """The hidden rule: class 1 iff the motif occurs or the sequence is GC-rich."""
    return int(DNA_MOTIF in sequence or gc_content(sequence) > GC_THRESHOLD)


def _dna_sequence(rng: random.Random, label: int) -> str:
    """Rejection-sample a sequence of the wanted class. Positives get the motif *or* high
    GC; negatives often get near-miss motifs ("GATC", "CATA") and GC close to the
    threshold, so neither letter counts nor one 4-mer alone solve the task."""
    while True:
        length = rng.randint(30, 60)
        route = rng.random()
        gc = rng.uniform(0.62, 0.75) if label and route < 0.5 else rng.uniform(0.3, 0.58)
        seq = [rng.choice("GC") if rng.random() < gc else rng.choice("AT") for _ in range(length)]
        planted = label and route >= 0.5
        insert = DNA_MOTIF if planted else rng.choice(("GATC", "CATA", "GTTA", "GACA"))
        if planted or rng.random() < 0.6:
            at = rng.randrange(length - 4)
            seq[at:at + 4] = insert
        sequence = "".join(seq)
        if dna_rule(sequence) == label:
            return sequence

# ----------------------------------------------------------------------- the public API


def _count(n) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise BertctlError(f"example count must be a whole number >= 0, got {n!r}")
    return n


class World:
    """Seeded generator of documents and labelled tasks, in English ("en") or "xx".

    Every method is deterministic in (seed, n) and the language only changes how the
    same content is written, so the two languages give parallel data with equal labels.
    """

    def __init__(self, seed: int = 0, language: str = "en"):
        if language not in LANGUAGES:
            raise BertctlError(f"unknown world language {language!r}",
                               fix=f"use one of: {', '.join(LANGUAGES)}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise BertctlError(f"world seed must be an integer, got {seed!r}")
        self.seed, self.language = seed, language

    def __repr__(self) -> str:
        return f"World(seed={self.seed}, language={self.language!r})"

    def _rng(self, stream: str) -> random.Random:
        # string seeds are hashed with SHA-512 by `random`: stable across runs and machines
        return random.Random(f"bertctl-world:{self.seed}:{stream}")

    def _tokens(self, spec: str) -> list[Token]:
        chunks = _parse(spec)
        if self.language == "en":
            return _fix_articles([t for _, tokens in chunks for t in tokens])
        return [(XX_LEXICON[w], tag) for _, tokens in _xx_order(chunks) for w, tag in tokens]

    def _text(self, spec: str) -> str:
        return " ".join(word for word, _ in self._tokens(spec))

    def _stories(self, stream: str):
        rng = self._rng(stream)
        while True:
            yield _story(rng)

    # -- pretraining text ------------------------------------------------------------
    def documents(self, n: int) -> list[list[str]]:
        """n stories of 5-7 sentences each, in script order."""
        stories = self._stories("documents")
        return [[self._text(s) for s in next(stories).sentences] for _ in range(_count(n))]

    def tagged_sentences(self, n: int) -> list[list[tuple[str, str]]]:
        """The first n sentences of `documents`, as (word, UPOS) pairs.
        Note "apple" is NOUN as a fruit and PROPN as the company: context decides."""
        out: list[list[Token]] = []
        for story in self._stories("documents"):
            if len(out) >= _count(n):
                return out[:n]
            out += [self._tokens(s) for s in story.sentences]
        return out

    # -- labelled tasks --------------------------------------------------------------
    def sentiment(self, n: int) -> list[dict]:
        rng, labels = self._rng("sentiment"), _balanced(self._rng("sentiment-labels"),
                                                        ("positive", "negative"), _count(n))
        return [{"text": self._text(_sentiment_spec(rng, label == "positive")), "label": label}
                for label in labels]

    def nli(self, n: int) -> list[dict]:
        rng = self._rng("nli")
        rows = []
        for label in _balanced(self._rng("nli-labels"),
                               ("entailment", "neutral", "contradiction"), _count(n)):
            premise, hypothesis = _nli_pair(rng, label)
            rows.append({"premise": self._text(premise), "hypothesis": self._text(hypothesis),
                         "label": label})
        return rows

    def qa(self, n: int) -> list[dict]:
        """SQuAD 2.0-style: a third of the questions are plausible but unanswerable
        (another person's question, or a verb the story never uses)."""
        rng, stories = self._rng("qa"), self._stories("qa-stories")
        rows = []
        for i, answerable in enumerate(_balanced(self._rng("qa-labels"), (True, True, False),
                                                 _count(n))):
            story = next(stories)
            sentences = [self._tokens(s) for s in story.sentences]
            context = " ".join(w for tokens in sentences for w, _ in tokens)
            answers: dict = {"text": [], "answer_start": []}
            if answerable:
                question, answer, index = rng.choice(story.questions)
                text, start = self._locate(sentences, answer, index)
                answers = {"text": [text], "answer_start": [start]}
            else:
                question = self._unanswerable(rng, story, stories)
            rows.append({"id": f"world-{self.seed}-{i}", "context": context,
                         "question": self._text(question), "answers": answers})
        return rows

    def _locate(self, sentences: list[list[Token]], answer: str, index: int) -> tuple[str, int]:
        """Character offset of the rendered answer inside sentence `index` of the context."""
        part = [w for w, _ in self._tokens(f"X:{answer}")]
        words = [w for w, _ in sentences[index]]
        at = _find(words, part)
        if at < 0:
            raise AssertionError(f"answer {part} not in sentence {words}")
        offset = sum(len(" ".join(w for w, _ in s)) + 1 for s in sentences[:index])
        return " ".join(part), offset + len(" ".join(words[:at])) + (1 if at else 0)

    @staticmethod
    def _unanswerable(rng: random.Random, story: Story, stories) -> str:
        spare = [base for base, past, _ in story.topic.actions
                 if base not in story.words() and past not in story.words()]
        if spare and rng.random() < 0.5:
            return f"Q:what | V:did | S:{story.name} | V:{rng.choice(spare)} | P:?"
        while True:  # someone else's question: other person, other kind of place
            other = next(stories)
            if other.name != story.name and other.topic != story.topic:
                return rng.choice(other.questions)[0]

    def similarity(self, n: int) -> list[dict]:
        """Sentence pairs scored 0-5 by the weighted share of slots (who, verb, object,
        adjective, place) they have in common; the second may front its place phrase."""
        rng = self._rng("similarity")
        rows = []
        for _ in range(_count(n)):
            a, b, score = _similar_pair(rng)
            rows.append({"sentence1": self._text(a.spec()),
                         "sentence2": self._text(b.spec(front_place=rng.random() < 0.3)),
                         "score": score})
        return rows

    def topic(self, n: int) -> list[dict]:
        """1-2 middle sentences of a story (the intro and feelings say nothing of the topic);
        "apple" occurs in both food and technology, so one word is not always enough."""
        rng = self._rng("topic")
        rows = []
        for label in _balanced(self._rng("topic-labels"), TOPIC_NAMES, _count(n)):
            story = _story_of_topic(rng, label)
            picked = story.sentences[2:2 + rng.choice((1, 2))]
            rows.append({"text": " ".join(self._text(s) for s in picked), "label": label})
        return rows

    def dna(self, n: int) -> list[dict]:
        """Balanced sequences over ACGT, labelled by `dna_rule` (same for both languages)."""
        rng = self._rng("dna")
        return [{"sequence": _dna_sequence(rng, label), "label": label}
                for label in _balanced(self._rng("dna-labels"), (0, 1), _count(n))]

    # -- probing and lexicon ---------------------------------------------------------
    def sense_sentences(self, word: str = "apple", n_per_sense: int = 5) -> list[tuple[str, str]]:
        """Alternating (sentence, sense) pairs, n_per_sense of each sense of `word`."""
        if word not in SENSES:
            raise BertctlError(f"no two-sense word {word!r} in the world",
                               fix=f"use one of: {', '.join(SENSES)}")
        rng = self._rng(f"senses-{word}")
        return [(self._text(_sense_spec(rng, word, sense)), sense)
                for _ in range(_count(n_per_sense)) for sense in SENSES[word]]

    def bilingual_lexicon(self) -> list[tuple[str, str]]:
        """(english, xx) pairs for content words; the mapping is the same for every seed."""
        return [(en, XX_LEXICON[en]) for en in sorted(LEXICON) if LEXICON[en] in CONTENT_TAGS]

    def pos_of(self, word: str) -> str:
        """UPOS of a word of this world's language ("apple" gives NOUN, its main sense)."""
        tags = LEXICON if self.language == "en" else _XX_TAGS
        if self.language == "en" and word == "an":
            return "DET"
        if word not in tags:
            raise BertctlError(f"{word!r} is not a word of the {self.language!r} world",
                               fix="see World.vocabulary()")
        return tags[word]

    def vocabulary(self) -> list[str]:
        """Every word type (punctuation included) the world can write in its language."""
        if self.language == "en":
            return sorted(set(LEXICON) | {"an"})
        return sorted(set(XX_LEXICON.values()))


def _story_of_topic(rng: random.Random, name: str) -> Story:
    """A story of the given topic (rejection is cheap: one in five stories matches)."""
    while True:
        story = _story(rng)
        if story.topic is _BY_NAME[name]:
            return story


def write_corpus(path, n_docs: int, seed: int = 0, language: str = "en") -> Path:
    """Pretraining text: one sentence per line, a blank line between documents (the
    layout BERT's NSP/SOP data builders expect)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    docs = World(seed, language).documents(n_docs)
    path.write_text("\n\n".join("\n".join(doc) for doc in docs) + "\n", encoding="utf-8")
    return path


def write_jsonl(path, rows: list[dict]) -> Path:
    """One JSON object per line (the format `datasets` loads with "json")."""
    from bertctl import jsonl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return jsonl.write_jsonl(path, rows)
