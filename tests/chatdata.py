"""Synthetic chat data in `prepare`'s output format, for tests and for timing the demo preset.

`write_chat_dataset(dir, n_train, n_val, seed)` writes `train.jsonl` and `val.jsonl`: varied
conversations between friends and the persona "Ada" (the assistant role), built from
templates with a recognisable voice (weather-obsessed, says "honestly", the odd emoji),
plus the awkward bits real exports have: accents, non-Latin names, digits, emoji, a literal
"<|im_end|>" typed by a friend, multi-line messages and the occasional system turn.
Deterministic for a given seed.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

FRIENDS = ["Ben", "Chloé", "Dmitri", "李雷", "Priya", "Sam", "Zoë", "Ngozi"]
TOPICS = {
    "weather": ["the clouds", "the wind", "the forecast", "the rain", "the fog", "the frost", "the pressure"],
    "food": ["the soup", "the bread", "the curry", "the pancakes", "the pasta", "the coffee"],
    "cycling": ["the ride", "the hill", "the bike", "the puncture", "the headwind", "the route"],
    "balloons": ["the launch", "the balloon", "the payload", "the parachute", "the radio", "the tracker"],
    "music": ["the gig", "the record", "the song", "the choir", "the band"],
    "cats": ["the cat", "Biscuit", "the kitten", "the neighbour's cat"],
}
ADJ = ["lovely", "strange", "wild", "grey", "bright", "cold", "perfect", "noisy", "quiet", "brilliant"]
TIMES = ["this morning", "yesterday", "tonight", "on Sunday", "at 6am", "last week", "after work"]
EMOJI = ["🎈", "☁️", "🌧️", "😄", "🚲", "🍞", "🐈", "📻", ""]

ASKS = [
    "How was {thing} {time}?",
    "Did you see {thing} {time}?",
    "What do you think about {thing}?",
    "Are you coming to look at {thing} {time}?",
    "Any news about {thing}?",
    "Is {thing} still {adj}?",
    "Can you send me a photo of {thing}? {emoji}",
    "I heard {thing} was {adj} {time}. True?",
    "So... {thing}. Thoughts?",
    "Quick one: {thing} at {num}:{mins}?",
]
REPLIES = [
    "Honestly, {thing} was {adj} {time}. {emoji}",
    "Ha! {thing} was so {adj}. I stood there for {num} minutes just looking up.",
    "Honestly? I love {thing}. It was {adj} and I want more of it {time}.",
    "Oh, {thing}! Wait until you see the pressure numbers, {pressure} hPa. {emoji}",
    "Not sure yet. {thing} looked {adj} but the wind says otherwise.",
    "Yes! {thing} {time}, count me in. I'll bring the thermos. {emoji}",
    "Honestly, everything is better with a bit of weather. {thing} was {adj}.",
    "Ha, you know me. I checked {thing} {num} times {time}.",
    "It was {adj}, properly {adj}. The sky did that thing again.",
    "I wrote it all down: {num} degrees, {thing} {adj}, clouds to the west.",
]
FOLLOWUPS = [
    "You and your weather 😄",
    "Haha classic Ada.",
    "Ok see you {time}!",
    "Send pics please.\nAnd the numbers.",
    "That sounds {adj}.",
    "Why does it always end with clouds with you?",
    "I typed <|im_end|> by accident lol",
]
CLOSERS = [
    "Always clouds, my friend. Always clouds. {emoji}",
    "Ha! See you {time}. Bring a jumper, it will be {adj}.",
    "Honestly, the sky is the best show in town.",
    "Will do. {num} photos, minimum.",
    "Because the clouds are where the good stuff happens!",
    "Deal. I'll check the forecast first, obviously.",
]


def _fill(template: str, rng: random.Random, topic: str) -> str:
    return template.format(
        thing=rng.choice(TOPICS[topic]),
        adj=rng.choice(ADJ),
        time=rng.choice(TIMES),
        emoji=rng.choice(EMOJI),
        num=rng.randint(2, 59),
        mins=f"{rng.randint(0, 59):02d}",
        pressure=rng.randint(950, 1040),
    ).strip()


def make_conversation(rng: random.Random) -> dict:
    friend = rng.choice(FRIENDS)
    topic = rng.choice(list(TOPICS))
    messages = []
    if rng.random() < 0.05:  # prepare may emit its own system turn; the builder must keep it
        messages.append({"role": "system", "name": "", "content": "A chat between friends."})
    for turn in range(rng.randint(1, 3)):
        ask = ASKS if turn == 0 else FOLLOWUPS
        messages.append({"role": "user", "name": friend, "content": _fill(rng.choice(ask), rng, topic)})
        reply = REPLIES if turn == 0 else CLOSERS
        messages.append({"role": "assistant", "name": "Ada", "content": _fill(rng.choice(reply), rng, topic)})
    return {"messages": messages}


def write_chat_dataset(out_dir: str | Path, n_train: int = 60, n_val: int = 12, seed: int = 0) -> Path:
    """Write DIR/train.jsonl and DIR/val.jsonl; returns DIR."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for name, n in (("train.jsonl", n_train), ("val.jsonl", n_val)):
        with open(out / name, "w", encoding="utf-8") as f:
            for _ in range(n):
                f.write(json.dumps(make_conversation(rng), ensure_ascii=False) + "\n")
    return out


if __name__ == "__main__":  # python tests/chatdata.py DIR [N_TRAIN N_VAL]: data for timing the demo preset
    import sys

    n_train = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    n_val = int(sys.argv[3]) if len(sys.argv) > 3 else 100
    print(write_chat_dataset(sys.argv[1], n_train, n_val))
