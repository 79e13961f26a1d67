"""Whose flight a ground database holds: its callsign, whether its listener checks the balloon's
tags, and what open sentences claim beside it. Every reader of the flight's own rows (its track,
its pictures) asks this one which rows are the flight's (`filter`, `keyed`)."""

from __future__ import annotations

from .tables import View


class FlightReader(View):
    """`GroundReader.flight`."""

    def trust(self) -> dict:
        """What the listener said it believes (writer.Store.set_trust): {"keyed": True, "fingerprint":
        ...} when it checks the flight's tags, {"keyed": False, ...} when it believes anyone; keyed
        None for a database whose listener never said (older than schema 12: anyone, as then)."""
        row = self._t.rows("trust", "SELECT keyed, fingerprint, set_at FROM trust WHERE id = 1")
        if not row:
            return {"keyed": None, "fingerprint": None, "set_at": None}
        return {"keyed": bool(row[0]["keyed"]), "fingerprint": row[0]["fingerprint"], "set_at": row[0]["set_at"]}

    def keyed(self) -> bool:
        """The listener checks the flight's tags: only what the balloon signed is the flight's."""
        return bool(self.trust()["keyed"])

    def filter(self) -> tuple[str, tuple]:
        """SQL over `telemetry AS t` for the flight's positions. With a key (`keyed`): what the
        balloon signed or tagged, nothing else, whoever speaks first or loudest. Without one, its
        callsign's, and of a number only when one claim stands under it (a forger's sentence under
        a number the balloon also used leaves that number out of the track, never in place of the
        real one)."""
        callsign = self.callsign()
        if callsign is None:
            return "0", ()
        if self.keyed():
            return "t.callsign = ? AND t.authentic = 1", (callsign,)
        contested = ("(SELECT count(*) FROM telemetry AS c WHERE c.callsign = t.callsign AND c.boot = t.boot "
                     "AND c.seq = t.seq) = 1")
        return f"t.callsign = ? AND {contested}", (callsign,)

    def callsign(self) -> str | None:
        """The flight's callsign: the one the balloon's signed or tagged frames named (a sentence,
        a late position, the boot event). With a key, only that: a claim never names the flight.
        Without one, else the one most sentences carry (a forger must outshout the beacon)."""
        if (tagged := self.tagged_callsign()) or self.keyed():
            return tagged
        return self._t.one(
            "telemetry", "SELECT callsign FROM telemetry GROUP BY callsign ORDER BY count(*) DESC, max(id) DESC LIMIT 1")

    def tagged_callsign(self) -> str | None:
        """The callsign a frame with the balloon's tag named, newest first; None when none has."""
        if self._t.has_column("telemetry", "authentic"):
            if found := self._t.one("telemetry", "SELECT callsign FROM telemetry WHERE authentic = 1 "
                                                 "ORDER BY id DESC LIMIT 1"):
                return found
        if not self._t.has_column("records", "authentic") or not self._t.has_column("records", "data"):
            return None
        return self._t.one("records", "SELECT json_extract(data, '$.callsign') FROM records WHERE kind = 'event' "
                                      "AND authentic = 1 AND typeof(data) = 'text' AND json_valid(data) "
                                      "AND json_extract(data, '$.event') = 'boot' "
                                      "AND coalesce(json_extract(data, '$.callsign'), '') != '' ORDER BY id DESC LIMIT 1")

    def claims(self) -> dict:
        """What open sentences claim beside the flight: other callsigns' sentences, and the
        flight's numbers two claims contest (left out of its track)."""
        callsign = self.callsign()
        others = self._t.rows("telemetry", "SELECT callsign, count(*) FROM telemetry WHERE callsign != ? "
                                           "GROUP BY callsign ORDER BY count(*) DESC LIMIT 20", (callsign or "",))
        contested = self._t.one("telemetry", "SELECT count(*) FROM (SELECT 1 FROM telemetry WHERE callsign = ? "
                                             "GROUP BY boot, seq HAVING count(*) > 1)", (callsign or "",), default=0)
        unsigned = self._t.one("telemetry", f"SELECT count(*) FROM telemetry WHERE callsign = ? AND "
                                            f"{self._t.column('telemetry', 'authentic')} = 0", (callsign or "",),
                               default=0)
        return {"callsign": callsign, "callsign_tagged": self.tagged_callsign() is not None,
                "keyed": self.trust()["keyed"], "unsigned_under_callsign": unsigned,
                "other_callsigns": {r[0]: r[1] for r in others}, "contested_numbers": contested}
