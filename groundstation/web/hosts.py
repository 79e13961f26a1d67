"""Which names the dashboard answers to: the `Host` of every request, the `Origin` of every POST.

DNS rebinding: a page the operator opens on a name its author controls (`evil.example`, or any
`evil.local` that a machine on the field network answers over mDNS) has its name re-pointed at
the station, and its script then talks to the dashboard as its own origin, the page's token
included. Only the name in the request's `Host` header gives it away, so the dashboard answers
only to names the operator chose:

- by default the loopback names: `localhost`, `127.0.0.1`, `[::1]`;
- the exact address or name it listens on (`serve --host 192.168.4.2`, `--host chase.local`);
- listening on every address (`--host 0.0.0.0` or `::`), any IP address as well: the chase team
  opens it by the laptop's address, and an address cannot be rebound (a page's own address is
  where it came from, so only this server's page has it);
- every name given with `serve --allow-host NAME` (a `.local` name the laptop announces, say).

A `.local` name is no longer allowed by itself: any machine on the field network may answer
for one. Names are matched exactly (lower case, a final dot dropped): no wildcards, which would
let a rebound name of the same kind back in. The port is not compared: a rebinding page keeps
the dashboard's port anyway. Pure logic; the server asks.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
EVERY_ADDRESS = ("0.0.0.0", "::", "")
LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
SHOWN_CHARS = 80  # of a refused name, in the answer


def _ip(text: str) -> str | None:
    """`text` as an IP address in its usual spelling (brackets off), None when it is not one."""
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def is_loopback(address: str) -> bool:
    """Whether a socket address (a client's, or the one the dashboard listens on) is this machine's own.
    A dashboard on `::` hears IPv4 clients as IPv4-mapped addresses (::ffff:127.0.0.1), which
    Python before 3.13 does not call loopback."""
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return address == "localhost"
    return (getattr(ip, "ipv4_mapped", None) or ip).is_loopback


def normal_name(text: str) -> str:
    """A host name as compared: lower case, without a final dot; an IP address in its usual spelling."""
    text = text.strip().lower()
    return _ip(text) or (text[:-1] if text.endswith(".") else text)


def host_of(host_header: str) -> str:
    """The name in a Host header (`name`, `name:port`, `[v6]:port`), without the port."""
    host_header = host_header.strip()
    if host_header.startswith("["):
        return host_header[1:].partition("]")[0]
    return host_header.rpartition(":")[0] if host_header.count(":") == 1 else host_header


def check_name(text: str) -> str:
    """An `--allow-host` value, normalized; ValueError naming what is wrong and what would do."""
    name = normal_name(text)
    if _ip(name) is not None:
        return name
    why = None
    if "*" in name:
        why = "a wildcard would let rebound names of that kind in too; name each host"
    elif "://" in name or "/" in name or ":" in name:
        why = "give the name alone, without scheme, port or path"
    elif not (0 < len(name) <= 253 and all(LABEL.fullmatch(label) for label in name.split("."))):
        why = "a host name is letters, digits and hyphens in dot-separated parts"
    if why:
        raise ValueError(f"--allow-host {text!r}: {why} (e.g. --allow-host chase-laptop.local, "
                         "or an IP address)")
    return name


class HostAllowList:
    """The names a dashboard listening on `bound` (its `--host`) answers to, with `extra` (the
    `--allow-host` names) added."""

    def __init__(self, bound: str, extra: Iterable[str] = ()):
        self.any_address = bound.strip() in EVERY_ADDRESS
        names = [*LOOPBACK_NAMES, *([] if self.any_address else [bound]), *extra]
        self.names = frozenset(normal_name(n) for n in names)

    def allows(self, host_header: str | None) -> bool:
        """Whether a request with this Host header (None: none) is answered."""
        if not host_header:
            return False
        name = normal_name(host_of(host_header))
        return name in self.names or (self.any_address and _ip(name) is not None)

    def origin_allowed(self, origin: str, host_header: str) -> bool:
        """Whether a POST's Origin is the dashboard's own: `http://` and the very Host the request
        was sent to, itself an allowed one (a page of another origin, `null` included, is refused)."""
        try:
            parts = urlsplit(origin.strip())
        except ValueError:
            return False
        return (parts.scheme == "http" and not parts.path and parts.netloc.lower() == host_header.strip().lower()
                and self.allows(parts.netloc))

    def describe(self) -> str:
        """What it answers to, in words: `localhost, 127.0.0.1, [::1], any IP address and chase.local`."""
        shown = [f"[{n}]" if ":" in n else n for n in sorted(self.names - set(LOOPBACK_NAMES))]
        words = [*(f"[{n}]" if ":" in n else n for n in LOOPBACK_NAMES),
                 *(["any IP address"] if self.any_address else []), *shown]
        return ", ".join(words[:-1]) + " and " + words[-1]

    def refusal(self, host_header: str | None) -> str:
        """The answer to a request whose Host is not allowed: what it answers to, and how to add a name."""
        if not host_header:
            return f"a request needs its Host header (this dashboard answers to {self.describe()})"
        name = normal_name(host_of(host_header))[:SHOWN_CHARS]
        return (f"this dashboard does not answer to the name {name!r} (only to {self.describe()}): open it by "
                f"one of those, or, if {name!r} is this station's own name, start it with "
                f"`serve --allow-host {name}` (in the station's file: [dashboard] allow_hosts = [\"{name}\"])")
