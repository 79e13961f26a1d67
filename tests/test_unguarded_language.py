"""The payload's warning that the persona's language has no claim words reaches the flight report
in words (issue 49, item 5): a Spanish persona's two flights aired "15 metros" at 34 km while the
report said "aired false: 0", and the only sign was a line in payload.log.
"""

from __future__ import annotations

import json

from sim.bench.report.truth_report import claims_section, describe_claims, unguarded_language


def _log(tmp_path, *events):
    (tmp_path / "payload.log").write_text("\n".join([json.dumps({"event": "listening"}), "Traceback (most recent",
                                                     *map(json.dumps, events)]) + "\n", encoding="utf-8")
    return tmp_path / "payload.log"


def test_the_report_says_the_language_was_not_guarded(tmp_path):
    _log(tmp_path, {"event": "persona_language_unguarded", "language": "es", "asked_in": "en", "level": "warning",
                    "guarded": ["en", "de"], "reads": "numbers and units", "timestamp": "2024-06-01T10:00:00Z"})
    section = claims_section(tmp_path)
    assert section["unguarded"] == {"language": "es", "reads": "numbers and units", "asked_in": "en",
                                    "guarded": ["en", "de"]}
    words = "\n".join(describe_claims(section))
    assert "UNGUARDED: the truth guard has no claim words for Spanish (es)" in words
    assert "claims in numbers and units only" in words and 'so "aired false" counts only those' in words


def test_a_warning_without_reads_names_what_the_guard_read_then(tmp_path):
    """The payload logs `reads` from issue 49 on; before, its guard read English words and numbers."""
    _log(tmp_path, {"event": "persona_language_unguarded", "language": "sv", "asked_in": "en"})
    line = "\n".join(describe_claims(claims_section(tmp_path)))
    assert "for sv (sv)" in line or "Swedish (sv)" in line
    assert "claims in English words and numbers only" in line


def test_a_guarded_flight_has_no_such_line(tmp_path):
    _log(tmp_path, {"event": "musing", "text": "Rising at 21 km.", "facts": {"language": "de"}})
    assert unguarded_language(tmp_path / "payload.log") is None
    assert "UNGUARDED" not in "\n".join(describe_claims(claims_section(tmp_path)))
    assert unguarded_language(tmp_path / "nothing.log") is None
