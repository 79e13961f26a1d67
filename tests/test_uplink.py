"""Signed uplink commands: the frame format, its verification against hostile bytes,
the payload's replay gate across restarts, and the ground's never-reused counter."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import struct
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from groundstation.link.uplink import CommandSigner, SignerStateError, generate_key_file, state_path_for_db
from payload.store import Store
from payload.uplink.gate import CommandGate
from stratoecho import wire
from stratoecho.wire import uplink
from stratoecho.wire.uplink import (
    Ack,
    AckRange,
    ApiAnswer,
    CommandId,
    LinkReport,
    MemoryNote,
    Ping,
    PowerMode,
    Resend,
    ResendItem,
    SetIntervals,
    SetMode,
    UplinkRejected,
    Verified,
    sign,
    verify,
)
from tests.fakes import AUTH

ROOT = Path(__file__).resolve().parent.parent
KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
PID = "STRATO1"

EXAMPLES = [
    Ping(0), Ping(0xBEEF), Ping(0xFFFF),
    SetMode(PowerMode.NOMINAL), SetMode(PowerMode.LOW_POWER), SetMode(PowerMode.SURVIVAL),
    SetIntervals(1, 65535), SetIntervals(60, 300),
    Resend((ResendItem(1, 3, 7),)),
    Resend((ResendItem(1, 3, 7, (0, 2, 5)), ResendItem(2, 0xFFFF, 0xFFFFFFFF), ResendItem(1, 4, 9, (254,)))),
    MemoryNote("a"), MemoryNote("é" * 100), MemoryNote("The ground says: wave at Lisbon 🌍"),
    ApiAnswer(7, 0, ""), ApiAnswer(0xFFFFFFFF, 255, "rate limited — ünïcode"), ApiAnswer(12, 0, "x" * 234),
    LinkReport(3, 42, 0), LinkReport(0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF),
    Ack((AckRange(1, 3, 1, 40),)), Ack((AckRange(1, 3, 1, 40), AckRange(2, 3, 7, 7), AckRange(5, 0xFFFF, 0, 2**32 - 1))),
]


def raw_frame(cmd_id: int, counter: int, args: bytes, key: bytes = KEY, pid: str = PID,
              version: int = 1, tag_len: int = 8) -> bytes:
    """The documented layout built independently of the module: lets tests sign bytes the
    module would never produce (unknown commands, bad arguments)."""
    pid_hash = hashlib.sha256(pid.encode()).digest()[:2]
    body = bytes([0xED, (version << 4) | cmd_id]) + struct.pack(">I", counter) + pid_hash + args
    return body + hmac.new(key, body, hashlib.sha256).digest()[:tag_len]


def reason_of(frame: bytes, last_counter: int = 0, **kw) -> str:
    with pytest.raises(UplinkRejected) as e:
        verify(kw.pop("key", KEY), frame, kw.pop("pid", PID), last_counter, **kw)
    assert e.value.reason in uplink.REJECT_REASONS
    return e.value.reason


# --------------------------------------------------------------------------- format


def test_first_byte_is_free_and_not_downlink():
    assert uplink.MAGIC == 0xED
    assert uplink.MAGIC not in wire.GATEWAY_FIRST_BYTES and uplink.MAGIC != wire.MAGIC
    with pytest.raises(wire.WireError, match="unknown first byte"):  # the downlink decoder never takes one
        wire.decode_frame(sign(KEY, 1, PID, Ping(1)), AUTH)


def test_golden_frame_matches_docstring_and_independent_build():
    frame = sign(KEY, 1, PID, Ping(0xBEEF))
    documented = "ed 11 00000001 7f66 beef 379fef62b575358b"
    assert documented in uplink.__doc__
    assert frame.hex() == documented.replace(" ", "")
    assert frame == raw_frame(CommandId.PING, 1, struct.pack(">H", 0xBEEF))
    assert verify(KEY, frame, PID, 0) == Verified(1, Ping(0xBEEF))


@pytest.mark.parametrize("command", EXAMPLES, ids=lambda c: type(c).__name__)
def test_every_command_round_trips(command):
    frame = sign(KEY, 5, PID, command)
    assert len(frame) <= wire.DEFAULT_MTU
    assert frame[0] == 0xED and frame[1] == 0x10 | command.command_id
    assert struct.unpack(">I", frame[2:6])[0] == 5
    assert frame[6:8] == hashlib.sha256(PID.encode()).digest()[:2]
    assert frame[8:-8] == command.pack()
    assert type(command).unpack(command.pack()) == command
    got = verify(KEY, frame, PID, 4)
    assert got == Verified(5, command) and type(got.command) is type(command)


@pytest.mark.parametrize("tag_len", [4, 8, 16, 32])
def test_tag_lengths(tag_len):
    frame = sign(KEY, 9, PID, SetIntervals(30, 600), tag_len=tag_len)
    assert len(frame) == uplink.HEADER_BYTES + 4 + tag_len
    assert verify(KEY, frame, PID, 0, tag_len=tag_len).command == SetIntervals(30, 600)
    # The tag length is configured, never read from the frame: a mismatch fails.
    other = 8 if tag_len != 8 else 4
    assert reason_of(frame, tag_len=other) in {"bad tag", "truncated"}


def test_bad_parameters_raise_value_error():
    for tag_len in (3, 33, True):
        with pytest.raises(ValueError, match="tag length"):
            sign(KEY, 1, PID, Ping(1), tag_len=tag_len)
        with pytest.raises(ValueError, match="tag length"):
            verify(KEY, b"\xed", PID, 0, tag_len=tag_len)
    with pytest.raises(ValueError, match="shorter than 16"):
        sign(b"k" * 15, 1, PID, Ping(1))
    for counter in (0, -1, 2**32):
        with pytest.raises(ValueError, match="counter"):
            sign(KEY, counter, PID, Ping(1))
    with pytest.raises(ValueError, match="not an uplink command"):
        sign(KEY, 1, PID, "PING")
    with pytest.raises(ValueError, match="payload id"):
        sign(KEY, 1, "", Ping(1))


@pytest.mark.parametrize("make", [
    lambda: Ping(65536), lambda: Ping(-1), lambda: Ping(True), lambda: SetMode(3),
    lambda: SetIntervals(0, 60), lambda: SetIntervals(60, 65536), lambda: Resend(()),
    lambda: Resend(tuple(ResendItem(1, 1, i) for i in range(256))), lambda: ResendItem(256, 1, 1),
    lambda: ResendItem(1, 1, 1, (255,)), lambda: ResendItem(1, 2**16, 1), lambda: MemoryNote(""),
    lambda: MemoryNote("x" * 201), lambda: ApiAnswer(2**32, 0), lambda: ApiAnswer(1, 256),
    lambda: ApiAnswer(1, 0, "\ud800"), lambda: AckRange(1, 1, 5, 4), lambda: Ack(()),
    lambda: Ack(tuple(AckRange(1, 1, i, i) for i in range(256))), lambda: AckRange(1, 2**16, 1, 1),
])
def test_commands_refuse_bad_values(make):
    with pytest.raises(ValueError):
        make()


def test_resend_fragments_are_normalised():
    assert ResendItem(1, 2, 3, (5, 1, 5, 0)).fragments == (0, 1, 5)


def test_frames_that_do_not_fit_the_mtu_are_refused_when_signing():
    with pytest.raises(wire.WireError, match="exceeds the MTU") as e:
        sign(KEY, 1, PID, ApiAnswer(1, 0, "x" * 235))
    assert e.value.reason == "too long"
    with pytest.raises(wire.WireError, match="exceeds the MTU"):
        sign(KEY, 1, PID, MemoryNote("x" * 100), mtu=64)


@pytest.mark.parametrize("tag_len,mtu", [(8, 255), (32, 255), (4, 64)])
def test_resend_batches_fit_the_mtu_and_lose_nothing(tag_len, mtu):
    items = [ResendItem(1, 3, s) for s in range(100)]
    items += [ResendItem(2, 3, 500, tuple(range(254))), ResendItem(1, 4, 1, (3, 9))]
    batches = uplink.resend_batches(items, tag_len=tag_len, mtu=mtu)
    got: dict[tuple[int, int, int], set[int] | None] = {}
    for b in batches:
        frame = sign(KEY, 1, PID, b, tag_len=tag_len, mtu=mtu)  # raises if it would not fit
        assert verify(KEY, frame, PID, 0, tag_len=tag_len, mtu=mtu).command == b
        for it in b.items:
            key = (it.stream, it.boot, it.seq)
            got[key] = None if not it.fragments else (got.get(key) or set()) | set(it.fragments)
    assert got == {(i.stream, i.boot, i.seq): (set(i.fragments) or None) for i in items}
    assert len(batches[0].items) == (mtu - 8 - tag_len - 1) // 8  # frames are filled, not one item each


# --------------------------------------------------------------------------- rejections


def test_wrong_key_is_a_bad_tag():
    assert reason_of(sign(OTHER_KEY, 1, PID, Ping(1))) == "bad tag"


def test_every_single_bit_flip_is_rejected_for_the_right_reason():
    frame = sign(KEY, 77, PID, Resend((ResendItem(1, 3, 7, (0, 2)),)))
    for i in range(len(frame) * 8):
        bad = bytearray(frame)
        bad[i // 8] ^= 0x80 >> (i % 8)
        reason = reason_of(bytes(bad))
        byte, bit = divmod(i, 8)
        if byte == 0:
            assert reason == "not uplink"
        elif byte == 1 and bit < 4:
            assert reason == "unknown version"
        elif byte in (6, 7):
            assert reason == "wrong payload"
        else:  # command id, counter, arguments, tag: all under the tag
            assert reason == "bad tag", (byte, bit)


def test_cut_frames_are_rejected():
    frame = sign(KEY, 3, PID, MemoryNote("remember the red field"))
    for n in range(len(frame)):
        assert reason_of(frame[:n]) in {"truncated", "bad tag"}
    assert reason_of(b"") == "truncated"
    assert reason_of(frame[:uplink.HEADER_BYTES + 7]) == "truncated"
    assert reason_of(frame[:-1]) == "bad tag"  # a cut tag is a wrong tag
    assert reason_of(frame[:-4]) == "bad tag"


def test_replays_and_old_counters_are_rejected_after_the_tag():
    frame = sign(KEY, 10, PID, Ping(1))
    assert verify(KEY, frame, PID, 9).counter == 10
    assert reason_of(frame, last_counter=10) == "replayed"
    assert reason_of(frame, last_counter=11) == "replayed"
    # A forged frame with an old counter is counted as forged, not as a replay.
    assert reason_of(sign(OTHER_KEY, 10, PID, Ping(1)), last_counter=10) == "bad tag"


def test_command_for_another_balloon_is_rejected():
    assert reason_of(sign(KEY, 1, "STRATO2", Ping(1))) == "wrong payload"
    assert uplink.payload_hash("STRATO1") != uplink.payload_hash("STRATO2")


def test_unknown_version_and_not_uplink():
    assert reason_of(raw_frame(CommandId.PING, 1, b"\x00\x01", version=2)) == "unknown version"
    assert reason_of(raw_frame(CommandId.PING, 1, b"\x00\x01", version=0)) == "unknown version"
    assert reason_of(b"$$STRATO1,1,00:00:00,0,0,0,0,0,0,0,1*0000\n") == "not uplink"
    assert reason_of(wire.fragment_record(wire.Record(wire.Kind.MUSING, 1, 1, 0, "hi"), auth=AUTH)[0]) == "not uplink"


def test_too_long_is_refused_before_hashing():
    assert reason_of(b"\xed" + bytes(255)) == "too long"
    assert reason_of(sign(KEY, 1, PID, MemoryNote("x" * 100)), mtu=64) == "too long"


@pytest.mark.parametrize("cmd_id", [0, *range(9, 16)])
def test_unknown_command_with_valid_tag(cmd_id):
    assert reason_of(raw_frame(cmd_id, 1, b"\x00\x01")) == "unknown command"


@pytest.mark.parametrize("cmd_id,args", [
    (CommandId.PING, b""), (CommandId.PING, b"\x01"), (CommandId.PING, b"\x00\x01\x02"),
    (CommandId.SET_MODE, b"\x03"), (CommandId.SET_MODE, b"\x00\x00"), (CommandId.SET_MODE, b""),
    (CommandId.SET_INTERVALS, b"\x00\x00\x00\x3c"), (CommandId.SET_INTERVALS, b"\x00\x3c\x00"),
    (CommandId.RESEND, b""), (CommandId.RESEND, b"\x00"),
    (CommandId.RESEND, b"\x02" + struct.pack(">BHIB", 1, 1, 1, 0)),  # one item of two
    (CommandId.RESEND, b"\x01" + struct.pack(">BHIB", 1, 1, 1, 3) + b"\x00\x01"),  # indices cut short
    (CommandId.RESEND, b"\x01" + struct.pack(">BHIB", 1, 1, 1, 1) + b"\xff"),  # index 255
    (CommandId.RESEND, b"\x01" + struct.pack(">BHIB", 1, 1, 1, 0) + b"\x00"),  # trailing byte
    (CommandId.MEMORY_NOTE, b""), (CommandId.MEMORY_NOTE, b"x" * 201), (CommandId.MEMORY_NOTE, b"\xff\xfe"),
    (CommandId.API_ANSWER, b"\x00\x00\x00\x01"), (CommandId.API_ANSWER, b"\x00\x00\x00\x01\x00\xc3"),
    (CommandId.ACK, b""), (CommandId.ACK, b"\x00"), (CommandId.ACK, b"\x02" + struct.pack(">BHII", 1, 1, 1, 2)),
    (CommandId.ACK, b"\x01" + struct.pack(">BHII", 1, 1, 9, 2)),  # an empty range
    (CommandId.ACK, b"\x01" + struct.pack(">BHII", 1, 1, 1, 2) + b"\x00"),  # trailing byte
])
def test_bad_arguments_with_valid_tag(cmd_id, args):
    assert reason_of(raw_frame(cmd_id, 1, args)) == "bad arguments"


def test_rejection_reasons_are_a_fixed_set():
    assert isinstance(UplinkRejected("bad tag", "x"), wire.WireError)
    with pytest.raises(ValueError):
        UplinkRejected("made up", "x")


# --------------------------------------------------------------------------- hostile bytes


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_verify(data):
    with pytest.raises(UplinkRejected):
        verify(KEY, data, PID, 0)


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 15), st.integers(0, 2**32 - 1), st.binary(max_size=260))
def test_random_bytes_behind_a_valid_header_never_verify(cmd, counter, rest):
    head = bytes([0xED, 0x10 | cmd]) + struct.pack(">I", counter) + hashlib.sha256(PID.encode()).digest()[:2]
    with pytest.raises(UplinkRejected) as e:
        verify(KEY, head + rest, PID, 0)
    assert e.value.reason in {"truncated", "bad tag", "too long"}


_items = st.builds(
    ResendItem, st.integers(0, 255), st.integers(0, 0xFFFF), st.integers(0, 2**32 - 1),
    st.lists(st.integers(0, 254), max_size=20).map(tuple),
)
_commands = st.one_of(
    st.builds(Ping, st.integers(0, 0xFFFF)),
    st.builds(SetMode, st.sampled_from(PowerMode)),
    st.builds(SetIntervals, st.integers(1, 0xFFFF), st.integers(1, 0xFFFF)),
    st.builds(Resend, st.lists(_items, min_size=1, max_size=10).map(tuple)),
    st.builds(MemoryNote, st.text(min_size=1, max_size=50)),
    st.builds(ApiAnswer, st.integers(0, 2**32 - 1), st.integers(0, 255), st.text(max_size=50)),
    st.builds(LinkReport, st.integers(0, 0xFFFF), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
    st.builds(Ack, st.lists(st.builds(lambda k, b, a, n: AckRange(k, b, a, a + n), st.integers(0, 255),
                                      st.integers(0, 0xFFFF), st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1)),
                            min_size=1, max_size=20).map(tuple)),
)


@settings(max_examples=300, deadline=None)
@given(_commands, st.integers(1, 2**32 - 1), st.sampled_from([4, 8, 16, 32]))
def test_any_command_round_trips(command, counter, tag_len):
    try:
        frame = sign(KEY, counter, PID, command, tag_len=tag_len)
    except (ValueError, wire.WireError):
        return  # text with surrogates, or too long for the MTU: refused at the ground, fine
    assert verify(KEY, frame, PID, counter - 1, tag_len=tag_len) == Verified(counter, command)


def _mutate(rng: random.Random, frame: bytes, others: list[bytes]) -> tuple[str, bytes]:
    b = bytearray(frame)
    op = rng.choice(["bit", "bits", "byte", "insert", "delete", "cut", "append", "splice", "swap", "repeat"])
    if op == "bit":
        i = rng.randrange(len(b) * 8)
        b[i // 8] ^= 1 << (i % 8)
    elif op == "bits":
        for _ in range(rng.randint(2, 8)):
            i = rng.randrange(len(b) * 8)
            b[i // 8] ^= 1 << (i % 8)
    elif op == "byte":
        b[rng.randrange(len(b))] = rng.randrange(256)
    elif op == "insert":
        i = rng.randrange(len(b) + 1)
        b[i:i] = rng.randbytes(rng.randint(1, 4))
    elif op == "delete":
        i = rng.randrange(len(b))
        del b[i:i + rng.randint(1, 4)]
    elif op == "cut":
        del b[rng.randrange(len(b)):]
    elif op == "append":
        b += rng.randbytes(rng.randint(1, 8))
    elif op == "splice":  # head of this frame, tail of another genuine one
        o = rng.choice(others)
        b = b[:rng.randrange(len(b) + 1)] + o[rng.randrange(len(o) + 1):]
    elif op == "swap":
        i, j = rng.sample(range(len(b)), 2)
        b[i], b[j] = b[j], b[i]
    else:  # a slice repeated
        i = rng.randrange(len(b))
        b[i:i] = b[i:i + rng.randint(1, 8)]
    return op, bytes(b)


def test_fuzzed_frames_are_never_falsely_accepted():
    rng = random.Random(20260101)
    frames = [sign(KEY, 10 + i, PID, c) for i, c in enumerate(EXAMPLES)]
    reasons: Counter[str] = Counter()
    noops = 0
    n = 24_000
    for _ in range(n):
        original = rng.choice(frames)
        op, mutated = _mutate(rng, original, frames)
        try:
            verify(KEY, mutated, PID, 0)
        except UplinkRejected as e:
            reasons[e.reason] += 1
            continue
        # Only a mutation that changed nothing may pass: swapping two equal bytes, or a
        # splice whose result is, byte for byte, the original or the other genuine frame.
        assert mutated == original or (op == "splice" and mutated in frames), (
            f"{op} made {mutated.hex()} from {original.hex()}, and it verified")
        noops += 1
    assert n - noops >= 20_000  # real mutations, every one rejected
    assert reasons["bad tag"] > n // 2
    assert set(reasons) <= uplink.REJECT_REASONS


# Key files, weak keys and keygen: tests/test_uplink_keys.py


# --------------------------------------------------------------------------- payload gate


def test_store_set_counter_max(tmp_path):
    s = Store(tmp_path / "q.db")
    assert s.counters.set_max("uplink", 5) == 5
    assert s.counters.set_max("uplink", 3) == 5  # never lowered
    assert s.counters.set_max("uplink", 9) == 9
    other = Store(tmp_path / "q.db")  # committed: another connection sees it at once
    assert other.counters.get("uplink") == 9
    other.close()
    s.close()
    assert Store(tmp_path / "q.db").counters.get("uplink") == 9


def test_gate_accepts_each_command_once_and_counts_rejections(tmp_path):
    gate = CommandGate(Store(tmp_path / "q.db"), KEY, PID)
    f5, f6, f7 = (sign(KEY, n, PID, Ping(n)) for n in (5, 6, 7))
    assert gate.accept(f6) == Ping(6)
    assert gate.last_counter == 6 and gate.store.counters.get(gate.counter_name) == 6
    assert gate.accept(f6) is None  # same counter twice
    assert gate.accept(f5) is None  # lower counter, heard late
    assert gate.accept(f7) == Ping(7)
    assert gate.accept(sign(OTHER_KEY, 8, PID, Ping(8))) is None
    assert gate.accept(b"garbage") is None
    assert gate.accepted == 2
    assert gate.rejections == Counter({"replayed": 2, "bad tag": 1, "not uplink": 1})
    assert gate.last_counter == 7  # rejected frames move nothing


def test_replay_is_rejected_after_a_restart(tmp_path):
    path = tmp_path / "q.db"
    store = Store(path)
    frame = sign(KEY, 41, PID, SetMode(PowerMode.SURVIVAL))
    assert CommandGate(store, KEY, PID).accept(frame) == SetMode(PowerMode.SURVIVAL)
    store.close()

    gate = CommandGate(Store(path), KEY, PID)  # the payload rebooted
    assert gate.last_counter == 41
    assert gate.accept(frame) is None
    assert gate.rejections == Counter({"replayed": 1})
    assert gate.accept(sign(KEY, 42, PID, SetMode(PowerMode.NOMINAL))) == SetMode(PowerMode.NOMINAL)


def test_counter_is_durable_when_accept_returns(tmp_path):
    """The process dies the instant accept() hands the command over: the counter is already stored."""
    db, frame = tmp_path / "q.db", sign(KEY, 7, PID, Ping(7))
    code = (
        "import os, signal\n"
        "from payload.store import Store\n"
        "from payload.uplink.gate import CommandGate\n"
        f"gate = CommandGate(Store({str(db)!r}), {KEY!r}, {PID!r})\n"
        f"assert gate.accept(bytes.fromhex({frame.hex()!r})) is not None\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=ROOT)
    assert proc.returncode == -9, proc.stderr.decode()
    gate = CommandGate(Store(db), KEY, PID)
    assert gate.accept(frame) is None and gate.rejections["replayed"] == 1


def test_gate_logs_once_per_reason_change(tmp_path):
    gate = CommandGate(Store(tmp_path / "q.db"), KEY, PID)
    frames = [b"noise"] * 5 + [sign(OTHER_KEY, n, PID, Ping(1)) for n in range(1, 4)]
    frames += [sign(KEY, 1, PID, Ping(1))] + [b"noise"] * 3
    with structlog.testing.capture_logs() as logs:
        for f in frames:
            gate.accept(f)
    events = [(e["event"], e.get("reason")) for e in logs]
    assert events == [
        ("uplink_rejected", "not uplink"), ("uplink_rejected", "bad tag"),
        ("uplink_command", None), ("uplink_rejected", "not uplink"),
    ]
    assert logs[-1]["total"] == 6  # the sixth "not uplink" opened the new run
    assert gate.rejections == Counter({"not uplink": 8, "bad tag": 3})


def test_racing_threads_accept_a_frame_once(tmp_path):
    gate = CommandGate(Store(tmp_path / "q.db"), KEY, PID)
    frames = [sign(KEY, n, PID, Ping(n)) for n in range(1, 21)]
    results: list = []
    for frame in frames:
        barrier = threading.Barrier(6)

        def go(frame=frame, barrier=barrier):
            barrier.wait()
            results.append(gate.accept(frame))

        threads = [threading.Thread(target=go) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(r.nonce for r in results if r is not None) == list(range(1, 21))
    assert gate.rejections == Counter({"replayed": 20 * 5})


def test_gate_from_key_file(tmp_path):
    key_path = tmp_path / "uplink.key"
    key = generate_key_file(key_path)
    gate = CommandGate.from_key_file(Store(tmp_path / "q.db"), key_path, PID)
    assert gate.accept(sign(key, 1, PID, MemoryNote("hello"))) == MemoryNote("hello")


# --------------------------------------------------------------------------- ground signer


def test_signer_counter_survives_restart_and_gate_accepts_all(tmp_path):
    state = tmp_path / "ground.db.uplink.json"
    gate = CommandGate(Store(tmp_path / "q.db"), KEY, PID)
    signer = CommandSigner(KEY, PID, state)
    assert signer.next_counter == 1
    first = [signer.sign(Ping(i)) for i in range(3)]
    assert [verify(KEY, f, PID, 0).counter for f in first] == [1, 2, 3]
    signer = CommandSigner(KEY, PID, state)  # the ground restarted
    later = signer.sign(SetIntervals(30, 600))
    assert verify(KEY, later, PID, 0).counter == 4
    assert [gate.accept(f) for f in first + [later]] == [Ping(0), Ping(1), Ping(2), SetIntervals(30, 600)]
    assert json.loads(state.read_text()) == {
        "version": 1, "payloads": {PID: {"next_counter": 5, "key": uplink.key_fingerprint(KEY)}}}
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(state.name)) == [
        state.name, state.name + ".lock"]  # no temporary files left behind


def test_signer_keeps_one_counter_per_balloon(tmp_path):
    state = tmp_path / "s.json"
    a, b = CommandSigner(KEY, "STRATO1", state), CommandSigner(OTHER_KEY, "STRATO2", state)
    a.sign(Ping(1)), a.sign(Ping(2))
    assert verify(OTHER_KEY, b.sign(Ping(1)), "STRATO2", 0).counter == 1
    assert a.next_counter == 3 and b.next_counter == 2


def test_failed_sign_spends_no_counter_and_skip_to_never_lowers(tmp_path):
    signer = CommandSigner(KEY, PID, tmp_path / "s.json")
    with pytest.raises(wire.WireError):
        signer.sign(ApiAnswer(1, 0, "x" * 300))
    assert signer.next_counter == 1
    assert signer.skip_to(100) == 100
    assert signer.skip_to(50) == 100
    assert verify(KEY, signer.sign(Ping(1)), PID, 99).counter == 100


def test_signers_in_threads_never_share_a_counter(tmp_path):
    state = tmp_path / "s.json"
    signers = [CommandSigner(KEY, PID, state) for _ in range(4)]  # separate instances, one file
    frames: list[bytes] = []

    def work(s):
        frames.extend(s.sign(Ping(0)) for _ in range(15))

    threads = [threading.Thread(target=work, args=(s,)) for s in signers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(verify(KEY, f, PID, 0).counter for f in frames) == list(range(1, 61))


@pytest.mark.skipif(os.name != "posix", reason="cross-process lock is POSIX flock")
def test_signers_in_processes_never_share_a_counter(tmp_path):
    state = tmp_path / "s.json"
    code = (
        "import sys\n"
        "from groundstation.link.uplink import CommandSigner\n"
        "from stratoecho.wire.uplink import Ping\n"
        f"s = CommandSigner({KEY!r}, {PID!r}, {str(state)!r})\n"
        "for _ in range(25): print(s.sign(Ping(0)).hex(), flush=True)\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, cwd=ROOT) for _ in range(3)]
    out = [p.communicate()[0].decode().split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    counters = sorted(verify(KEY, bytes.fromhex(h), PID, 0).counter for lines in out for h in lines)
    assert counters == list(range(1, 76))


@pytest.mark.parametrize("content, says", [
    ("{not json", "the file: Invalid JSON"), ("[]", "the file: Input should be an object"),
    ('{"version": 2, "payloads": {}}', "version: Input should be 1"),
    ('{"version": 1, "payloads": {"STRATO1": {"next_counter": 0}}}', "payloads.STRATO1.next_counter: Input should be gre"),
    ('{"version": 1, "payloads": {"STRATO1": {"next_counter": true}}}', "payloads.STRATO1.next_counter: Input should be a"),
    ('{"version": 1, "payloads": {"STRATO1": {}}}', "payloads.STRATO1.next_counter: Field required"),
    ('{"version": 1, "payloads": {"S": {"next_counter": 2, "retired": {"ab": -1}}}}', "payloads.S.retired.ab: Input"),
])
def test_signer_refuses_a_corrupt_state_file(tmp_path, content, says):
    state = tmp_path / "s.json"
    state.write_text(content)
    with pytest.raises(SignerStateError) as e:
        CommandSigner(KEY, PID, state)
    assert str(state) in str(e.value) and "skip_to" in str(e.value) and says in str(e.value)
    assert state.read_text() == content  # left alone for the operator


def test_a_state_file_from_before_keys_were_told_apart_keeps_its_counter(tmp_path):
    state = tmp_path / "s.json"
    state.write_text(json.dumps({"version": 1, "payloads": {PID: {"next_counter": 7}}}))
    signer = CommandSigner(KEY, PID, state)
    assert verify(KEY, signer.sign(Ping(1)), PID, 0).counter == 7
    assert json.loads(state.read_text()) == {
        "version": 1, "payloads": {PID: {"next_counter": 8, "key": uplink.key_fingerprint(KEY)}}}


def test_signer_for_db(tmp_path):
    key_path = tmp_path / "uplink.key"
    key = generate_key_file(key_path)
    signer = CommandSigner.for_db(key_path, PID, tmp_path / "ground.db")
    assert signer.state_path == state_path_for_db(tmp_path / "ground.db") == tmp_path / "ground.db.uplink.json"
    assert verify(key, signer.sign(Ping(3)), PID, 0) == Verified(1, Ping(3))
    with pytest.raises(ValueError, match="tag length"):
        CommandSigner(key, PID, tmp_path / "x.json", tag_len=2)


@pytest.mark.parametrize("tag_len, mtu", [(8, 255), (32, 64), (4, 40)])
def test_ack_batches_fit_the_mtu_and_lose_nothing(tag_len, mtu):
    ranges = [AckRange(1, 3, 10 * i, 10 * i + 5) for i in range(60)]
    batches = uplink.ack_batches(ranges, tag_len=tag_len, mtu=mtu)
    assert [r for b in batches for r in b.ranges] == ranges
    assert all(len(sign(KEY, 1, PID, b, tag_len=tag_len, mtu=mtu)) <= mtu for b in batches)
