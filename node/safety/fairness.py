"""Screening a report's free text with the person section's rule, so profiling cannot go around the form.

The person section refuses race or ethnicity without at least two other details; "suspicious black guy" typed into
*What happened?* used to skip that check. The screen reads the text for a race or ethnicity word that refers to a
person ("black guy", "hispanic men", "a guy who looked Middle Eastern", "some Mexicans"), not one that describes a
thing ("white van", "black ice", "the Mexican restaurant"), and counts the details other than race the report gives
about a person (clothing, hair, age, height, build, shoes, distinguishing features, vehicle), in the text and in
the person section together. Too few: refused with the reason. Enough: accepted, but held for the manager's review,
because a description by race is the one a neighborhood most needs a second look at. A report that describes a
person at all can be held too (`reports.hold_person_reports`, on by default).

Word lists cannot understand language; they catch the common shapes of profiling posts (the ones Nextdoor's
research found) and leave the rest to moderation, which sees why each report was held.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Multi-word terms become one token before matching.
_PHRASES = {"middle eastern": "middleeastern", "african american": "africanamerican", "puerto rican": "puertorican",
            "native american": "nativeamerican", "pacific islander": "pacificislander"}
RACE_WORDS = frozenset({
    "black", "white", "brown", "hispanic", "latino", "latina", "latinx", "asian", "african", "africanamerican",
    "arab", "arabic", "middleeastern", "mexican", "indian", "chinese", "korean", "filipino", "caucasian", "somali",
    "muslim", "jewish", "gypsy", "roma", "puertorican", "dominican", "haitian", "jamaican", "pakistani", "persian",
    "nativeamerican", "indigenous", "pacificislander", "biracial",
})
# Plural nouns for people of a group: on their own they refer to people ("some Mexicans were hanging around").
GROUP_NOUNS = frozenset({"blacks", "whites", "hispanics", "latinos", "latinas", "asians", "africans", "arabs",
                         "mexicans", "somalis", "muslims", "jews", "gypsies", "caucasians", "haitians", "jamaicans",
                         "pakistanis", "dominicans", "puertoricans"})
PERSON_NOUNS = frozenset({
    "man", "men", "guy", "guys", "woman", "women", "lady", "ladies", "male", "males", "female", "females", "boy",
    "boys", "girl", "girls", "kid", "kids", "teen", "teens", "teenager", "teenagers", "youth", "youths", "person",
    "people", "persons", "dude", "dudes", "individual", "individuals", "suspect", "suspects", "gentleman",
    "gentlemen", "family", "families", "group", "gang", "couple", "stranger", "strangers", "driver", "fellow",
    "folks", "thug", "thugs", "character", "characters",
})
# Words that may stand between a race word and its person ("middle eastern looking guy", "black teenage boys").
_BETWEEN = frozenset({"looking", "teenage", "young", "old", "older", "elderly", "adult", "tall", "short", "big",
                      "small", "skinny", "heavy", "suspicious", "sketchy", "shady", "strange", "male", "female",
                      "ish", "skinned", "american"})
_LINKS = frozenset({"who", "that"})
_VERBS = frozenset({"is", "was", "were", "are", "looked", "looks", "looking", "seemed", "seems", "appeared"})

# Details other than race, by the person section's names; a word or pattern in the text counts for its detail.
DETAIL_WORDS: dict[str, frozenset[str]] = {
    "clothing": frozenset({"jacket", "hoodie", "hooded", "sweatshirt", "shirt", "tshirt", "coat", "parka",
                           "raincoat", "jeans", "pants", "trousers", "shorts", "dress", "skirt", "hat", "cap",
                           "beanie", "hood", "mask", "gloves", "scarf", "vest", "uniform", "sweater", "backpack",
                           "bag", "helmet", "overalls", "suit", "tracksuit", "wearing"}),
    "hair": frozenset({"hair", "haired", "bald", "beard", "bearded", "mustache", "moustache", "dreadlocks",
                       "dreads", "braids", "ponytail", "buzzcut", "blond", "blonde", "redhead", "goatee"}),
    "age": frozenset({"teen", "teens", "teenager", "teenagers", "teenage", "elderly", "twenties", "thirties",
                      "forties", "fifties", "20s", "30s", "40s", "50s", "60s", "aged"}),
    "height": frozenset({"tall", "short", "ft", "feet", "foot", "cm", "inches", "height"}),
    "build": frozenset({"thin", "slim", "skinny", "heavy", "heavyset", "stocky", "muscular", "overweight",
                        "build", "petite", "large", "lanky"}),
    "shoes": frozenset({"shoes", "sneakers", "boots", "sandals", "trainers", "heels", "slippers", "barefoot"}),
    "features": frozenset({"tattoo", "tattoos", "tattooed", "scar", "glasses", "sunglasses", "limp", "piercing",
                           "earrings", "accent", "mole", "cane", "crutches", "wheelchair", "dog"}),
    "vehicle": frozenset({"car", "van", "truck", "suv", "sedan", "bike", "bicycle", "scooter", "motorcycle",
                          "moped", "plate", "plates", "pickup", "minivan", "hatchback", "skateboard"}),
}
_DETAIL_VOCABULARY = frozenset().union(*DETAIL_WORDS.values())
_PATTERNS = {
    "height": re.compile(r"\b\d\s*(?:'|ft\b|foot\b|feet\b)|\b\d\.\d+\s*m\b|\b1\d\d\s*cm\b"),
    "age": re.compile(r"\b(?:about|around|maybe|aged?)\s+\d{1,2}\b|\b\d{1,2}\s*(?:years?|yrs?|y/?o)\b|"
                      r"\bin (?:his|her|their) (?:late |early |mid )?\d0s\b"),
}
MIN_DETAILS = 2
RACE_ALONE = ("race or ethnicity alone does not describe a person: add at least two other details (clothing, "
              "hair, age, height, build, shoes, distinguishing features or vehicle), or leave the person out")


@dataclass(frozen=True, slots=True)
class Screening:
    """What the screen found in a report: the race or ethnicity words about a person (and the fields holding
    them), the details other than race, and whether it describes a person at all."""

    race_terms: tuple[str, ...]
    fields: tuple[str, ...]
    details: tuple[str, ...]
    describes_person: bool

    def refusal(self) -> str | None:
        """Why the report is refused (a race or ethnicity word about a person with too few other details), or
        None."""
        if not self.race_terms or len(self.details) >= MIN_DETAILS:
            return None
        where = " and ".join(f"'{name}'" for name in self.fields)
        found = ", ".join(f"'{term}'" for term in self.race_terms)
        count = f"{len(self.details) or 'no'} other detail{'' if len(self.details) == 1 else 's'}"
        return (f"field {where} describes someone by race or ethnicity ({found}) with {count}: {RACE_ALONE}. "
                "Say what the person did, not who they seemed to be")

    def hold_reason(self, *, hold_people: bool) -> str:
        """Why the report waits for the manager before residents see it ("" when it need not)."""
        if self.race_terms:
            return (f"mentions race or ethnicity ({', '.join(self.race_terms)}): such reports are reviewed before "
                    "residents see them")
        if self.describes_person and hold_people:
            return ("describes a person: reports about people are reviewed before residents see them "
                    "(reports.hold_person_reports)")
        return ""


def _tokens(text: str) -> list[str]:
    text = text.lower().replace("-", " ")
    for phrase, joined in _PHRASES.items():
        text = text.replace(phrase, joined)
    return re.findall(r"[a-z0-9]+", text)


_UNJOIN = {joined: phrase for phrase, joined in _PHRASES.items()}


def race_terms(text: str) -> list[str]:
    """The race or ethnicity words in `text` that refer to a person, as found ("black guy", "mexicans")."""
    return [" ".join(_UNJOIN.get(word, word) for word in term.split()) for term in _race_terms(_tokens(text))]


def _race_terms(words: list[str]) -> list[str]:
    found: list[str] = []
    for at, word in enumerate(words):
        if word in GROUP_NOUNS:
            found.append(word)
        elif word in RACE_WORDS:
            after = at + 1
            while after < len(words) and after - at <= 3 and words[after] in _BETWEEN - PERSON_NOUNS:
                after += 1
            if after < len(words) and words[after] in PERSON_NOUNS:
                found.append(" ".join(words[at:after + 1]))
            elif _linked_back(words, at) and (after >= len(words) or words[after] not in _DETAIL_VOCABULARY):
                # "a man who was white-haired" describes hair, not race
                found.append(" ".join(words[max(0, at - 3):at + 1]))
    return found


def _linked_back(words: list[str], at: int) -> bool:
    """'a guy who looked hispanic', 'men that were black': a person, who/that, a verb, then the race word."""
    back = words[max(0, at - 4):at]
    return any(w in PERSON_NOUNS for w in back) and any(w in _LINKS for w in back) and any(w in _VERBS for w in back)


def detail_kinds(text: str) -> set[str]:
    """The kinds of detail other than race that `text` gives (clothing, height...)."""
    words = set(_tokens(text))
    kinds = {kind for kind, vocabulary in DETAIL_WORDS.items() if words & vocabulary}
    lowered = text.lower()
    kinds |= {kind for kind, pattern in _PATTERNS.items() if pattern.search(lowered)}
    return kinds


def screen(texts: dict[str, str], person: dict[str, str] | None) -> Screening:
    """Screen a report's free texts (field name -> text: what happened, where, the person's details) and its
    person section (whose own race field counts as a race term, its other fields as details)."""
    terms: list[str] = []
    fields: list[str] = []
    for name, text in texts.items():
        if found := race_terms(text):
            terms += found
            fields.append(name)
    joined = "\n".join(texts.values())
    kinds = detail_kinds(joined) | set(person or {})
    kinds.discard("race")
    if person and person.get("race"):
        terms.append(person["race"].lower())
    mentions_person = bool(set(_tokens(joined)) & PERSON_NOUNS) and bool(detail_kinds(joined))
    return Screening(tuple(dict.fromkeys(terms)), tuple(fields), tuple(sorted(kinds)),
                     bool(person) or bool(terms) or mentions_person)
