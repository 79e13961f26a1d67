"""The musing prompt's words, one table per language (payload/persona/prompts.py builds the
prompt from them). A persona is asked in the language its owner writes (the bundle's
`persona.language`), so the question, the readings and its memories are in the words it was
trained on, and it answers in them; the truth guard reads its claims in the same language
(stratoecho/claim_words.py). A language without a table is asked in English.

    Wording                   one language's words
    wording(code) -> Wording  the table of ISO 639-1 `code`; English for "" and any without one

Numbers are written as the language writes them ("12,4 km hoch"): a persona copies the
prompt's figures, and the guard reads them back with that language's decimal mark.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Wording:
    code: str
    phases: dict[str, str]  # what the persona is doing, as the situation says it
    modes: dict[str, str]  # payload.policy.modes.Mode values; nominal needs no words
    decimal: str
    up: str  # "{km} km up"
    no_fix: str
    no_fix_last: str  # "{alt}": the last known height in `up`'s words
    outside: str  # "{deg} outside"
    battery: str  # "{volts}"
    sunlight: str
    night: str
    aloft_minutes: str  # "{n}"
    aloft_hours: str  # "{h}": one decimal
    nowhere: str
    situation: str  # "{situation}": the user turn's first sentence
    remember: str  # the memory list's heading
    reached_out: str  # the outcomes' heading
    you_know: str  # "{text}": what the owner wrote it before the flight
    said: str  # "{who}": another balloon's words
    ground_told: str
    thought: str
    just_now: str
    minutes_ago: str  # "{n}"
    hours_ago: str
    days_ago: str
    question: str  # the plain question, asked where the budget has no room for another
    questions: tuple[str, ...]  # asked in turn aloft
    phase_questions: dict[str, tuple[str, ...]]  # asked when a figure of the flight is owed
    recall: dict[str, str] = field(default_factory=dict)  # memory_query's English words in this language

    def number(self, x: float, digits: int) -> str:
        return f"{x:.{digits}f}".replace(".", self.decimal)


EN = Wording(
    code="en",
    phases={
        "pre-launch": "still on the ground, waiting for launch",
        "ascent": "rising",
        "float": "floating at the top of the flight, neither rising nor falling",
        "descent": "falling under the parachute",
        "landed": "back on the ground",
    },
    modes={"low_power": "saving power", "survival": "in survival mode, saving every last bit of power"},
    decimal=".",
    up="{km} km up", no_fix="with no GPS fix", no_fix_last="with no GPS fix (last known {alt})",
    outside="{deg} outside", battery="battery {volts} V", sunlight="in sunlight", night="in the night",
    aloft_minutes="launched {n} minutes ago", aloft_hours="launched {h} hours ago",
    nowhere="somewhere, not sure where",
    situation="Right now you are {situation}.",
    remember="You remember:", reached_out="When you reached out lately:",
    you_know="- you know: {text}", said="{who} said", ground_told="the ground told you", thought="you thought",
    just_now=" (just now)", minutes_ago=" ({n} min ago)", hours_ago=" ({n} h ago)", days_ago=" ({n} days ago)",
    question="What are you thinking?",
    # Asked in turn, aloft: with the one question SmolLM2-135M opened 9 of 11 musings "I'm thinking
    # about/of" (issue 40); the others ask about this moment, which invites its figures.
    questions=("What are you thinking?", "What do you notice up here?", "How does it feel, this far up?",
               "What would you tell the people listening on the ground?", "What is on your mind at this height?"),
    # SmolLM2-135M answered "Are you still climbing?" and the like with its phase rightly 9 times
    # in 10, where asked its height or time aloft outright it mostly invented one (docs/payload.md,
    # "Not a template"). Worded in turn: one wording opened its answers alike ("I'm still climbing").
    phase_questions={
        "pre-launch": ("Are you still waiting on the ground?", "How is the wait before launch?"),
        "ascent": ("Are you still climbing?", "How is the climb going?", "Still going up?"),
        "float": ("Are you floating now?", "How is it, floating at the top of the flight?"),
        "descent": ("Are you coming down now?", "How is the fall going?", "Is the parachute open?"),
        "landed": ("Have you landed?", "How was the landing?"),
    },
)

# German as a German owner would be asked by a friend ("du"). No word of another phase in a
# question: "Was fällt dir auf?" would put "fällt" (falls) in the answers of a rising persona.
DE = Wording(
    code="de",
    phases={
        "pre-launch": "noch am Boden und wartest auf den Start",
        "ascent": "am Steigen",
        "float": "ganz oben und schwebst",
        "descent": "am Sinken, am Fallschirm",
        "landed": "wieder am Boden",
    },
    modes={"low_power": "im Stromsparmodus", "survival": "im Überlebensmodus, jedes bisschen Strom zählt"},
    decimal=",",
    up="{km} km hoch", no_fix="ohne GPS-Fix", no_fix_last="ohne GPS-Fix (zuletzt {alt})",
    outside="{deg} draußen", battery="Akku {volts} V", sunlight="in der Sonne", night="in der Nacht",
    aloft_minutes="vor {n} Minuten gestartet", aloft_hours="vor {h} Stunden gestartet",
    nowhere="irgendwo, du weißt nicht genau wo",
    situation="Gerade bist du {situation}.",
    remember="Du erinnerst dich:", reached_out="Als du zuletzt nachgefragt hast:",
    you_know="- du weißt: {text}", said="{who} sagte", ground_told="die Bodenstation sagte dir", thought="du dachtest",
    just_now=" (gerade eben)", minutes_ago=" (vor {n} Min.)", hours_ago=" (vor {n} Std.)", days_ago=" (vor {n} Tagen)",
    question="Woran denkst du gerade?",
    questions=("Woran denkst du gerade?", "Was siehst du hier oben?", "Wie ist es, so weit oben zu sein?",
               "Was würdest du den Leuten sagen, die unten zuhören?", "Was geht dir in dieser Höhe durch den Kopf?"),
    phase_questions={
        "pre-launch": ("Wartest du noch am Boden?", "Wie ist das Warten vor dem Start?"),
        "ascent": ("Steigst du noch?", "Wie läuft der Aufstieg?", "Geht's noch nach oben?"),
        "float": ("Schwebst du jetzt?", "Wie ist es, ganz oben zu schweben?"),
        "descent": ("Sinkst du jetzt?", "Wie läuft der Abstieg?", "Ist der Fallschirm offen?"),
        "landed": ("Bist du gelandet?", "Wie war die Landung?"),
    },
    recall={"launch": "start", "waiting": "warten", "ground": "boden", "rising": "steigen", "climbing": "steige",
            "up": "oben", "float": "schweben", "floating": "schwebe", "drifting": "treiben", "falling": "sinken",
            "parachute": "fallschirm", "down": "runter", "landed": "gelandet", "home": "zuhause", "low": "tief",
            "fields": "felder", "clouds": "wolken", "sky": "himmel", "stratosphere": "stratosphäre",
            "dark": "dunkel", "space": "weltall", "edge": "rand", "cold": "kalt", "freezing": "eiskalt",
            "warm": "warm", "battery": "akku", "power": "strom", "tired": "müde", "lost": "verloren",
            "gps": "gps", "sun": "sonne", "light": "licht", "night": "nacht", "stars": "sterne"},
)

TABLES = {"en": EN, "de": DE}


def wording(code: str | None) -> Wording:
    """The table of language `code`: English for none and for a language without one."""
    return TABLES.get((code or "").lower(), EN)
