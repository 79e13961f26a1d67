"""Who may queue commands from the dashboard: the operator, by a password set at the station.

Everyone who can reach the dashboard may watch; queuing a command (the listener signs it and
sends it to the balloon) needs an operator session. The password is set once per station with
`python -m groundstation operator-password` and kept as a scrypt hash (the standard library's
`hashlib.scrypt`, n=2**14, r=8, p=1: ~16 MB and a few tens of ms per try) in a small TOML file,
by default `~/.config/stratoecho/operator.toml`, which must be its reader's own and closed to
everyone else (`stratoecho.secret_files`: another user who owns it decides who the operator is).
Nothing in it lets anyone recover the password.

A password is taken only if guessing it would take long (`password_problem`): at least
MIN_PASSWORD_CHARS characters, NIST SP 800-63B-4's minimum for a password that is the only
factor, and a guess count of 10^14 or more by zxcvbn (MIT; Dropbox's estimator, which knows
common passwords, words, names, keyboard runs, repeats, sequences and dates), so that the hash,
if its file ever leaks, holds against offline guessing too. zxcvbn is told the station's own
words and the passwords published as examples (xkcd's "correcthorsebatterystaple"), and judges
the password as typed and with its spaces and separators taken out, the easier of the two
counting ("ground station operator": 10^13 guesses as typed, 10^4 without the spaces). A refusal
says what zxcvbn found (its warning, else the kinds of part it recognised, never the parts
themselves: the message may reach a log) and what would do. No rules about which characters:
those make passwords harder to remember, not to guess.

A login gives a session: a random 256-bit id in an HttpOnly, SameSite=Strict cookie, valid for
`session_s` from the login (not renewed by use, so a phone left logged in on the field does not
stay an operator), ended at once by logging out. Sessions live in the server's memory: a
restart logs everyone out. Each session remembers the addresses it was used from (its last
SEEN_ADDRESSES): the dashboard keeps room for those past the crowd's caps (limits.py), since a
connection is accepted before its cookie can be read.

Wrong passwords (`LoginLimits`) are counted per address and per account (one today: OPERATOR,
whoever has the station's password). An address has ADDRESS_FREE_TRIES wrong ones, the account
ACCOUNT_FREE_TRIES from all addresses together; past them, every further try must wait a delay
that doubles with each wrong one (FIRST_DELAY_S, 2 s, 4 s, ...) up to MAX_DELAY_S after the last
wrong one, and is refused unchecked (429, Retry-After) until then; the right password clears
both counts. So guesses spread over many addresses (a field network, a NAT, IPv6) meet the
account's delay: about twenty tries in the first twenty minutes, then four an hour.

The trade-off: someone who keeps guessing also keeps the operator waiting, since the account's
delay holds for every address. It is a delay, never a lockout: it never grows past MAX_DELAY_S
(15 min), the operator's own try is checked as soon as it has passed, and the counts live in
the server's memory, so restarting `serve` at the station clears them at once (a permanent
lockout would give anyone on the field network a way to take the commands away for the whole
flight). Counts are forgotten FORGET_S after their last wrong try.

Without a password file, nobody can log in. Then the dashboard takes commands only where it
listens on a loopback address and the request comes from this machine (one laptop, one user,
as before); opened to a network (`serve --host 0.0.0.0`), it is read-only for everyone.

Pure logic with the clock passed in (`clock`, seconds, monotonic), so the tests own the time.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
import secrets
import threading
import tomllib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stratoecho.backoff import Backoff
from stratoecho.secret_files import secret_file_problem

SESSION_S = 8 * 3600  # a launch day's chase, then log in again
OPERATOR = "operator"  # the one account: whoever has the station's password
ADDRESS_FREE_TRIES = 5  # wrong passwords from one address before each further try waits
ACCOUNT_FREE_TRIES = 10  # wrong passwords for one account, from all addresses, before each further try waits
FIRST_DELAY_S = 1.0  # the first wait; it doubles with each further wrong password
MAX_DELAY_S = 900.0  # 15 min: the longest anyone guessing can keep the operator waiting
PASSWORD_BACKOFF = Backoff(FIRST_DELAY_S, 2.0, MAX_DELAY_S)
FORGET_S = 24 * 3600.0  # a count with no wrong password for a day is forgotten
MAX_ADDRESSES = 10_000  # addresses counted at most; beyond, the longest quiet is forgotten (the account still counts)
MIN_PASSWORD_CHARS = 15  # NIST SP 800-63B-4, 3.1.1.2: a password that is the only factor
MAX_PASSWORD_CHARS = 256  # what a login's body (handler.MAX_BODY_BYTES) holds however it is escaped
# zxcvbn's score 4 starts at 10^10, but a GPU tries scrypt at n=2^14 of the order of 10^4 times a
# second: 10^10 guesses fall in about two weeks once the file leaks, 10^14 take centuries.
# ("ilovemyballoon!!": 10^11; "strato1 balloon launch": 10^12 without its spaces.)
MIN_GUESSES_LOG10 = 14
# What a guesser tries first against this station: its own words (zxcvbn's user inputs).
STATION_WORDS = ("stratoecho", "strato", "echo", "groundstation", "ground", "operator", "dashboard", "balloon",
                 "payload", "station", "launch", "flight", "chase", "helium", "radio")
# ... and the passwords every cracking list holds because they were published as examples
# (xkcd 936): zxcvbn alone put "correcthorsebatterystaple" at 10^14 guesses.
PUBLISHED_PASSWORDS = ("correcthorsebatterystaple", "tr0ub4dor&3")
# Separators zxcvbn reads as characters to guess: "ground station operator" came out at 10^13
# with them and 10^4 without. Both forms are estimated; the easier counts.
_SEPARATORS = re.compile(r"[\s\-_.,;:/+]+")
SEEN_ADDRESSES = 8  # addresses a session remembers (a phone, the laptop, each network they moved through)
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
COOKIE = "stratoecho_operator"


def default_file() -> Path:
    """`$XDG_CONFIG_HOME/stratoecho/operator.toml`, else `~/.config/stratoecho/operator.toml`."""
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "stratoecho" / "operator.toml"


class OperatorFileError(Exception):
    """A password file that cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Credential:
    """The operator password's scrypt hash and its parameters."""

    salt: bytes
    digest: bytes
    n: int = SCRYPT_N
    r: int = SCRYPT_R
    p: int = SCRYPT_P

    @classmethod
    def from_password(cls, password: str) -> Credential:
        """The hash of a new password; ValueError saying what is wrong with it and what would do."""
        if problem := password_problem(password):
            raise ValueError(problem)
        salt = secrets.token_bytes(16)
        return cls(salt, _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P))

    def verify(self, password: str) -> bool:
        return hmac.compare_digest(_scrypt(password, self.salt, self.n, self.r, self.p), self.digest)

    def write(self, path: Path) -> None:
        """Write the file readable by its owner only (made so before the hash goes in)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        text = ("# stratoecho operator password (scrypt); set with `python -m groundstation operator-password`\n"
                f'scrypt = {{ n = {self.n}, r = {self.r}, p = {self.p}, salt = "{self.salt.hex()}", '
                f'hash = "{self.digest.hex()}" }}\n')
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def read(cls, path: Path, euid: int | None = None) -> Credential:
        """The credential in `path`, which must be the reader's own (`euid`, default this process's)
        and closed to others; OperatorFileError naming the file, what is wrong and the fix."""
        try:
            with open(path, "rb") as f:  # asked of the file opened, not of whatever the name points to later
                if problem := secret_file_problem(path, os.fstat(f.fileno()), "operator password file", euid):
                    raise OperatorFileError(problem)
                data = tomllib.loads(f.read().decode("utf-8"))
        except FileNotFoundError:
            raise OperatorFileError(f"{path}: no such file; set a password with "
                                    "`python -m groundstation operator-password`") from None
        except (OSError, UnicodeDecodeError) as e:
            raise OperatorFileError(f"{path}: cannot read: {e}") from None
        except tomllib.TOMLDecodeError as e:
            raise OperatorFileError(f"{path}: not TOML: {e}") from None
        s = data.get("scrypt")
        try:
            n, r, p = int(s["n"]), int(s["r"]), int(s["p"])
            salt, digest = bytes.fromhex(s["salt"]), bytes.fromhex(s["hash"])
        except (TypeError, KeyError, ValueError):
            raise OperatorFileError(f"{path}: expected a line `scrypt = {{ n = …, r = …, p = …, salt = \"hex\", "
                                    "hash = \"hex\" }`, as `operator-password` writes it") from None
        if not (n >= 2**10 and n & (n - 1) == 0 and 0 < r <= 64 and 0 < p <= 16 and len(salt) >= 8 and len(digest) >= 16):
            raise OperatorFileError(f"{path}: scrypt parameters out of range (n a power of 2 >= 1024, r 1..64, "
                                    "p 1..16, a salt of 8 bytes or more, a hash of 16 or more)")
        return cls(salt, digest, n, r, p)


# How a refusal names the parts zxcvbn recognised (its match patterns), never quoting them.
_PART_KINDS = {"repeat": "a repeat", "sequence": "a sequence", "spatial": "a keyboard pattern", "date": "a date",
               "regex": "a recent year"}
_WORD_KINDS = {"user_inputs": "this station's own words", "passwords": "a common password",
               "male_names": "a common name", "female_names": "a common name", "surnames": "a common name"}


def _parts_found(sequence: list[dict]) -> str:
    """"it is built on X and Y": the kinds of the parts zxcvbn guessed cheaply, in order, once each."""
    kinds = []
    for match in sequence:
        if match["pattern"] == "dictionary":
            kind = _WORD_KINDS.get(match.get("dictionary_name"), "common words")
            kind += " with look-alike letters" if match.get("l33t") else " reversed" if match.get("reversed") else ""
        else:
            kind = _PART_KINDS.get(match["pattern"])  # bruteforce: the part that is not guessed cheaply
        if kind and kind not in kinds:
            kinds.append(kind)
    if not kinds:
        return "it is made of common words, names or patterns"
    return "it is built on " + (kinds[0] if len(kinds) == 1 else ", ".join(kinds[:-1]) + " and " + kinds[-1])


def password_problem(password: str) -> str | None:
    """What makes `password` unfit for the operator, and what would do; None when it will do."""
    what_would_do = (f"four or more unrelated words picked at random (not a sentence), {MIN_PASSWORD_CHARS} "
                     "characters or more, would do")
    if len(password) < MIN_PASSWORD_CHARS:
        return (f"the operator password has {len(password)} characters; it needs at least {MIN_PASSWORD_CHARS}: "
                f"{what_would_do}")
    if len(password) > MAX_PASSWORD_CHARS:
        return (f"the operator password has {len(password)} characters; the dashboard's login takes at most "
                f"{MAX_PASSWORD_CHARS}")
    from zxcvbn import zxcvbn  # here, not at the top: ~13 MB of word lists that `serve` never needs

    words = [*STATION_WORDS, *PUBLISHED_PASSWORDS]
    found = min((zxcvbn(form, user_inputs=words, max_length=MAX_PASSWORD_CHARS)
                 for form in dict.fromkeys((password, _SEPARATORS.sub("", password))) if form),
                key=lambda f: f["guesses_log10"])
    if found["guesses_log10"] >= MIN_GUESSES_LOG10:
        return None
    feedback = found["feedback"]
    why = (feedback["warning"] or _parts_found(found["sequence"])).rstrip(".")
    advice = " ".join(feedback["suggestions"]).rstrip(".")
    return (f"the operator password is too easy to guess: {why[0].lower() + why[1:]}; zxcvbn finds it in about "
            f"10^{found['guesses_log10']:.0f} guesses, and it needs 10^{MIN_GUESSES_LOG10}"
            f"{'; zxcvbn advises: ' + advice if advice else ''}; {what_would_do}")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * r * n + (1 << 20),
                          dklen=32)


@dataclass(frozen=True)
class Session:
    id: str
    expires_at: float  # on the clock given to Sessions


class TooManyTries(Exception):
    """A login refused unchecked: `held` says by whose count ("address" or "account"),
    `wait_s` how long until a try is checked again (`retry_after`: whole seconds, for Retry-After)."""

    def __init__(self, wait_s: float, held: str):
        self.wait_s, self.held = wait_s, held
        self.retry_after = max(1, math.ceil(wait_s))
        whose = "from this address" if held == "address" else "for the operator, from all addresses together"
        super().__init__(f"too many wrong passwords {whose}: try again in {self.retry_after} s")


@dataclass
class _Count:
    wrong: int = 0  # wrong passwords since the last right one
    last: float = -math.inf  # when the last was tried


def delay_s(wrong: int, free: int) -> float:
    """How long after the last of `wrong` wrong passwords the next try waits, `free` of them costing nothing:
    FIRST_DELAY_S after the first beyond them, doubling with each, at most MAX_DELAY_S."""
    return PASSWORD_BACKOFF.delay_s(wrong - free + 1)


class LoginLimits:
    """Wrong passwords per address and per account, and how long each must wait (the module's
    docstring says why a delay and not a lockout). Not thread-safe: Sessions holds its lock."""

    def __init__(self) -> None:
        self._addresses: OrderedDict[str, _Count] = OrderedDict()  # longest quiet first
        self._accounts: dict[str, _Count] = {}

    def check(self, account: str, address: str, now: float) -> None:
        """TooManyTries when a try for `account` from `address` must still wait; the longer wait wins."""
        self._forget(now)
        waits = []
        for held, count, free in (("address", self._addresses.get(address), ADDRESS_FREE_TRIES),
                                  ("account", self._accounts.get(account), ACCOUNT_FREE_TRIES)):
            if count is not None and (left := count.last + delay_s(count.wrong, free) - now) > 0:
                waits.append((left, held))
        if waits:
            raise TooManyTries(*max(waits))

    def count(self, account: str, address: str, now: float) -> None:
        """One more try that may be wrong (counted before the password is checked, so tries sent
        together cannot slip past the limit; `clear` takes it back when it was right)."""
        for count in (self._addresses.setdefault(address, _Count()), self._accounts.setdefault(account, _Count())):
            count.wrong += 1
            count.last = now
        self._addresses.move_to_end(address)
        while len(self._addresses) > MAX_ADDRESSES:
            self._addresses.popitem(last=False)

    def clear(self, account: str, address: str) -> None:
        """The right password: both counts start again."""
        self._addresses.pop(address, None)
        self._accounts.pop(account, None)

    def wrong(self, account: str | None = None, address: str | None = None) -> int:
        """Wrong passwords counted for `account` or `address`."""
        count = self._accounts.get(account) if account is not None else self._addresses.get(address or "")
        return count.wrong if count else 0

    def _forget(self, now: float) -> None:
        while self._addresses and next(iter(self._addresses.values())).last <= now - FORGET_S:
            self._addresses.popitem(last=False)
        for account in [a for a, c in self._accounts.items() if c.last <= now - FORGET_S]:
            del self._accounts[account]


class Sessions:
    """Logins against `credential` (None: nobody can log in), sessions and their expiry."""

    def __init__(self, credential: Credential | None, clock: Callable[[], float],
                 session_s: float = SESSION_S) -> None:
        if session_s <= 0:
            raise ValueError(f"a session lasts more than 0 s, got {session_s}")
        self.credential, self.clock, self.session_s = credential, clock, session_s
        self._live: dict[str, float] = {}
        self._seen: dict[str, OrderedDict[str, None]] = {}  # session -> the addresses it came from, newest last
        self.limits = LoginLimits()
        self._lock = threading.Lock()  # the server answers each request in its own thread

    @property
    def can_log_in(self) -> bool:
        return self.credential is not None

    def log_in(self, password: str, client: str, account: str = OPERATOR) -> Session | None:
        """A new session for the right password; None for a wrong one (or when none is set).
        TooManyTries, before the password is even checked, while wrong ones from `client` or
        for `account` must wait (LoginLimits)."""
        with self._lock:
            now = self.clock()
            self.limits.check(account, client, now)
            self.limits.count(account, client, now)
        right = self.credential is not None and self.credential.verify(password)  # slow: outside the lock
        with self._lock:
            if not right:
                return None
            self.limits.clear(account, client)
            self._expire(now)
            session = Session(secrets.token_urlsafe(32), now + self.session_s)
            self._live[session.id] = session.expires_at
            self._see(session.id, client)
            return session

    def valid(self, session_id: str | None, address: str | None = None) -> float | None:
        """Seconds left of the session `session_id`; None when there is no such live session.
        `address`: where this use of it came from, remembered while the session lasts."""
        if not session_id:
            return None
        with self._lock:
            now = self.clock()
            expires = self._live.get(session_id)
            if expires is None:
                return None
            if expires <= now:
                self._end(session_id)
                return None
            if address is not None:
                self._see(session_id, address)
            return expires - now

    def seen_from(self, address: str) -> bool:
        """Whether a live session was used from `address` (its login, or a request with its cookie)."""
        with self._lock:
            if not self._seen:
                return False
            now = self.clock()
            return any(address in seen and self._live.get(sid, -math.inf) > now for sid, seen in self._seen.items())

    def log_out(self, session_id: str | None) -> None:
        with self._lock:
            self._end(session_id or "")

    def _see(self, session_id: str, address: str) -> None:  # under the lock
        seen = self._seen.setdefault(session_id, OrderedDict())
        seen[address] = None
        seen.move_to_end(address)
        while len(seen) > SEEN_ADDRESSES:
            seen.popitem(last=False)

    def _end(self, session_id: str) -> None:  # under the lock
        self._live.pop(session_id, None)
        self._seen.pop(session_id, None)

    def _expire(self, now: float) -> None:
        for sid in [s for s, t in self._live.items() if t <= now]:
            self._end(sid)
