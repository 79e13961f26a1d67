"""`make bench`'s rows for the owner's voice classifier as the Pi runs it (stratoecho/voice_score.py).

The payload loads BUNDLE/voice.json.gz once (Bundle.voice) and scores each candidate musing with it
to choose the one most like its owner. Measured in a process of its own, so the memory is the
classifier's: RSS just before Bundle.voice() and after it (the bundle's manifest and the scorer's code
already loaded, as in the payload), the time that call takes, and a musing's scoring time, here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# Candidate musings of a length the persona writes (max_tokens 64 is at most about 250 characters; these are 136-147).
MUSINGS = (
    "12 km up and the sky has gone that deep blue it only does up here. -56 outside, and I'm fine, honestly. "
    "the ground is a map with the labels off.",
    "rising still - the cloud tops are below me now, flat and bright like a floor someone forgot to finish. "
    "no wind to speak of, which is odd",
    "ha. the sun is on my left side and the shadow of the balloon is a tiny dot on the clouds. "
    "I keep thinking someone down there is looking up",
    "Cold. Very cold. The battery says 3.9 V and I believe it, mostly. 2 hours aloft and the horizon has started "
    "to curve, just a little, if you squint.",
)
ROUNDS = 50  # scorings of every musing; the median is the row

_CHILD = """
import json, statistics, sys, time
import psutil
from stratoecho.bundle import load_bundle
import stratoecho.voice_score

proc = psutil.Process()
bundle = load_bundle(sys.argv[1], verify=False)
musings = json.loads(sys.argv[2])
before = proc.memory_info().rss
t0 = time.perf_counter()
scorer = bundle.voice()
load_s = time.perf_counter() - t0
after = proc.memory_info().rss
if scorer is None:
    print(json.dumps(None))
    sys.exit(0)
times = []
for _ in range(int(sys.argv[3])):
    for m in musings:
        t0 = time.perf_counter()
        scorer.probability(m)
        times.append(time.perf_counter() - t0)
print(json.dumps({"load_s": load_s, "rss_mib": (after - before) / 2**20, "score_s": statistics.median(times),
                  "ngrams": scorer.ngrams, "members": len(scorer.members), "file": bundle.manifest.owner.voice,
                  "numpy": "numpy" in sys.modules}))
"""


def rows(bundle_dir: Path) -> list[tuple]:
    if not (bundle_dir / "persona.toml").is_file():
        return [(f"voice classifier: (no bundle at {bundle_dir}: run `make persona`)", "-", "", "")]
    out = subprocess.run([sys.executable, "-c", _CHILD, str(bundle_dir), json.dumps(MUSINGS), str(ROUNDS)],
                         capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    if r is None:
        return [(f"voice classifier: (the bundle at {bundle_dir} has none: built before it, or too few messages)",
                 "-", "", "")]
    size = (bundle_dir / r["file"]).stat().st_size
    chars = sum(len(m) for m in MUSINGS) / len(MUSINGS)
    return [
        (f"voice classifier: {r['file']} size", f"{size / 1e3:,.0f}", "KB",
         f"{r['ngrams']:,} n-grams, {r['members']} calibration folds"),
        ("voice classifier: load (Bundle.voice)", f"{1000 * r['load_s']:,.0f}", "ms", "gunzip, JSON, arrays; here"),
        ("voice classifier: memory", f"{r['rss_mib']:,.1f}", "MiB",
         "RSS added by loading it" + ("" if r["numpy"] else "; no numpy in the process")),
        ("voice classifier: a musing scored", f"{1000 * r['score_s']:,.2f}", "ms",
         f"median over {ROUNDS} x {len(MUSINGS)} musings of {chars:.0f} chars; here"),
    ]
