"""Records accepted while the card refused writes, held in memory until it takes them."""

from __future__ import annotations

from .streams import PRIORITY


class HeldRecords:
    """Records accepted while the card refused writes, by a negative id: [stream, boot, seq,
    created, payload, sent]. The radio sends them from here until the card takes them.

    Bounded by `limit`: full even in memory, the least precious goes (counted in `evicted`,
    the store's count of records dropped for room, by stream)."""

    def __init__(self, limit: int, evicted: dict[str, int]):
        self.limit = limit
        self.evicted = evicted
        self.records: dict[int, list] = {}
        self._ids = 0
        self.retired_ids: set[int] = set()  # ids of the RAM database, which may name other rows on the card

    def __bool__(self) -> bool:
        return bool(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def hold(self, stream: str, boot: int, seq: int, created: float, payload: bytes, sent: bool = False) -> None:
        memory = self.records
        if len(memory) >= self.limit:
            # Full even in memory: let the least precious go (the lowest priority, oldest).
            victim = max(memory, key=lambda i: (PRIORITY[memory[i][0]], -memory[i][3]))
            self.evicted[memory[victim][0]] = self.evicted.get(memory[victim][0], 0) + 1
            del memory[victim]
        self._ids -= 1
        memory[self._ids] = [stream, boot, seq, created, payload, sent]
