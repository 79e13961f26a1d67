"""An mbox of sent mail: Thunderbird's "Sent" folder file, or Gmail Takeout's "Sent.mbox".

    From - Tue Mar 12 21:14:00 2024                  the mbox separator line ("From " at a line start)
    From: Ada Lindqvist <ada@example.org>
    Date: Tue, 12 Mar 2024 21:14:00 +0100
    Subject: Re: Launch on Sunday?
    Message-ID: <...>   References: <root> <...>
    Content-Type: multipart/alternative; ...           text/plain and text/html, any charset and encoding

Each mail is one `post` (the owner's writing on its own, not a turn in a chat): the text/plain
body decoded from its transfer encoding and charset (or, without one, a crude text of the
text/html body), with what is not the owner's cut away: quoted lines ("> ..."), the "On ...,
... wrote:" line above them, Outlook's "-----Original Message-----" or "From:/Sent:" block and
everything after it, a forwarded mail ("---------- Forwarded message ---------" and after), the
signature (RFC 3676 "-- " line and after) and mobile footers ("Sent from my iPhone"), in the
languages clients write them in. A mail that was only a forward is flagged forwarded.

Mail that no person wrote is passed over and counted by reason (`reader.stats.skipped`, which
`prepare` adds to its drops): "notification" (an automated sender: Auto-Submitted, Precedence
bulk, a list one cannot post to, a delivery report, a no-reply address; `automated`) and
"calendar" (a calendar program's invitation or answer; `noise_reason`). The title is the subject without Re:/Fwd:/AW:/SV:
prefixes; the chat is the thread (the first References id, else In-Reply-To, else the mail's
own Message-ID, else the subject), hashed. The time is the Date header, to UTC; a mail without a
readable Date is skipped.

Owner: the From address equal (case-insensitively) to an --owner e-mail address, or the From
display name equal to an --owner name. No address is ever written out: `author_id` is
"mail_" + the first 12 hex digits of sha256 of the lower-cased address (an --owner value of
that form matches too), and message ids and thread ids are hashed the same way. Mails from
someone else (a received mail in an "All mail" mbox) are read as posts by someone else, which
`drop_reason` drops as "not_owner": their words never become the persona's.
"""

from __future__ import annotations

import email
import email.utils
import hashlib
import mailbox
import re
from collections.abc import Iterator, Sequence
from datetime import timezone
from email import policy
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path

import structlog

from . import IngestError, Message, Reader

log = structlog.get_logger(__name__)

HEX = 12

_HEADER_LINE = re.compile(r"^[!-9;-~]+:[ \t]")  # an RFC 822 field name, a colon, a space
_KNOWN_HEADERS = re.compile(
    r"^(?:from|date|subject|message-id|to|received|return-path|x-gm-thrid|x-mozilla-status)\s*:", re.I | re.M
)
# The headers read as structures (addresses, MIME parameters): the email package parses one in time
# growing with the square of its length (32 KB of quotes in a Content-Type took minutes), so a mail
# with one longer than any mail program writes is skipped as corrupt before it is parsed at all.
MAX_PARSED_HEADER_CHARS = 2000
_PARSED_HEADER = re.compile(rb"^(?:from|content-type|content-transfer-encoding|content-disposition)[ \t]*:"
                            rb"[^\n]*(?:\n[ \t][^\n]*)*", re.I | re.M)  # the field and its folded lines
_REPLY_PREFIX = re.compile(r"^\s*(?:(?:re|fw|fwd|aw|sv|wg|vs|tr|antw|rif|odp|ref)\s*(?:\[\d+\])?\s*[:：]\s*)+", re.I)
_FWD_SUBJECT = re.compile(r"^\s*(?:fw|fwd|wg|tr|rv|vs)\s*[:：]", re.I)

# Where the quoted or forwarded part begins; everything from there is not the owner's.
# The localised forms are those mail clients write (Outlook, Gmail, Apple Mail, Thunderbird;
# see docs/data.md for the sources).
_ORIGINAL = re.compile(
    r"^\s*-{2,}\s*(?:Original Message|Ursprüngliche Nachricht|Message d'origine|Mensaje original|Messaggio originale"
    r"|Mensagem original|Oorspronkelijk bericht|Oprindelig meddelelse|Ursprungligt meddelande|Opprinnelig melding)"
    r"\s*-{2,}\s*$",
    re.I,
)
_FORWARD = re.compile(
    r"^\s*(?:-{2,}\s*(?:Forwarded message|Forwarded Message|Weitergeleitete Nachricht|Message transféré"
    r"|Mensaje reenviado|Messaggio inoltrato|Mensagem encaminhada|Doorgestuurd bericht|Vidarebefordrat meddelande)\s*-{2,}"
    r"|Begin forwarded message:|Début du message réexpédié\s?:|Anfang der weitergeleiteten Nachricht:)\s*$",
    re.I,
)
_OUTLOOK_RULE = re.compile(r"^\s*_{10,}\s*$")
_OUTLOOK_FROM = re.compile(r"^\s*\*?(?:From|Von|De|Da|Van|Från|Fra|Od)\s*:\*?\s+\S", re.I)
_OUTLOOK_NEXT = re.compile(
    r"^\s*\*?(?:Sent|Date|Gesendet|Datum|Envoyé|Enviado(?: el)?|Enviada em|Inviato|Verzonden|Skickat|Sendt|Wysłano"
    r"|To|An|À|Para|A|Aan|Till|Til|Do|Subject|Betreff|Objet|Asunto|Assunto|Oggetto|Onderwerp|Ämne|Emne|Temat)\s*:",
    re.I,
)
_WROTE_WORDS = (
    r"(?:wrote|schrieb|a écrit|escribió|escreveu|ha scritto|schreef|skrev|napisał(?:\(a\))?|kirjoitti|írta"
    r"|napsal(?:\(a\))?|написал(?:\(а\))?|yazdı)"
)
_ATTRIBUTION = re.compile(rf"^\s*(?:On|Am|Le|El|Em|Il|Op|Den|På|W dniu)\s.*\b{_WROTE_WORDS}\b.*:\s*$", re.I | re.S)
_WROTE = re.compile(rf"{_WROTE_WORDS}\s*:\s*$", re.I)
# Gmail in some languages starts with the weekday ("tir. 12. mar. 2024 kl. 21:14 skrev Noor <…>:")
# or has no "wrote" at all ("вт, 12 мар. 2024 г. в 21:14, Noor <noor@…>:"): a date (at most two
# short words before its first digit), a sender, a colon, just above a quote.
_DATE_START = r"^\s*(?:\S{1,6}\s+){0,2}\d"
_WROTE_AFTER_DATE = re.compile(rf"{_DATE_START}.*\b{_WROTE_WORDS}(?:\s|:)", re.I | re.S)
_ADDRESS_COLON = re.compile(rf"{_DATE_START}.*<[^<>\s]+@[^<>\s]+>\)?\s*:\s*$", re.S)
_SIGNATURE = re.compile(r"^-- ?$")
_FROM_ESCAPED = re.compile(r"^>(>*From )", re.M)
_FOOTER = re.compile(
    r"^\s*(?:Sent from my \S.*|Sent from (?:Mail|Outlook|Yahoo Mail|Gmail|Proton ?Mail|Samsung)\b.*"
    r"|Sent with Proton ?Mail.*|Get Outlook for \S+.*|Von meinem \S+ gesendet\.?|Envoyé de mon \S+.*"
    r"|Enviado desde mi \S+.*|Enviado do meu \S+.*|Inviato da(?:l mio)? \S+.*|Verzonden (?:vanaf|met) (?:mijn )?\S+.*"
    r"|Skickat från min \S+.*|Sendt fra min \S+.*|Wysłane z (?:mojego )?\S+.*|Outlook für \S+ herunterladen)\s*$",
    re.I,
)

# Mail no person wrote. Auto-Submitted (RFC 3834: auto-replied, auto-generated, auto-notified)
# and the X-Autoreply/X-Autorespond of older vacation programs; Precedence (not a standard,
# RFC 2076, but what bulk senders and list servers set); the list headers of RFC 2369, where a
# list one cannot post to (no List-Post mailto: a newsletter, an announcement list) is a
# notification and a discussion list is people talking; delivery reports (multipart/report,
# RFC 6522); and the senders' addresses that say so themselves.
_AUTOMATED_SENDER = re.compile(
    r"^(?:[^@]*[-_.+])?(?:no-?_?reply|do-?_?not-?_?reply|mailer-daemon|postmaster|bounces?|notifications?|notify"
    r"|alerts?)(?:[-_.+][^@]*)?@",
    re.I,
)
# A calendar program's invitation, answer or cancellation carries an iTIP method (RFC 5546),
# on the part's Content-Type (iMIP, RFC 6047) or as the METHOD line of the iCalendar data;
# an .ics merely attached to a mail (METHOD:PUBLISH or none) leaves the mail's text to read.
_ITIP_METHODS = frozenset("request reply cancel counter declinecounter refresh add".split())
_ICS_METHOD = re.compile(rb"^METHOD:[ \t]*([A-Za-z-]+)", re.M)


def noise_reason(msg: EmailMessage) -> str | None:
    """Why a mail is not writing at all: "calendar" (an invitation or its answer), "notification"
    (an automated sender), or None."""
    if any(_itip_method(part) in _ITIP_METHODS for part in msg.walk()):
        return "calendar"
    return "notification" if automated(msg) else None


def automated(msg: EmailMessage) -> str:
    """The header that shows a mail was sent by a program, not typed by a person; "" if none."""
    submitted = str(msg.get("Auto-Submitted") or "").strip().lower()
    if submitted and not submitted.startswith("no"):
        return "Auto-Submitted"
    for name in ("X-Autoreply", "X-Autorespond"):
        if msg.get(name) is not None:
            return name
    precedence = str(msg.get("Precedence") or "").strip().lower()
    if precedence in ("bulk", "junk", "auto_reply"):
        return "Precedence"
    discussion = "mailto:" in str(msg.get("List-Post") or "").lower()
    if not discussion and (precedence == "list" or msg.get("List-Unsubscribe") is not None or msg.get("List-Id") is not None):
        return "List-Unsubscribe"
    if msg.get_content_type() == "multipart/report":
        return "multipart/report"
    _, address = email.utils.parseaddr(str(msg.get("From") or ""))
    return "From" if _AUTOMATED_SENDER.match(address) else ""


def _itip_method(part: EmailMessage) -> str:
    if part.get_content_type() not in ("text/calendar", "application/ics"):
        return ""
    method = str(part.get_param("method") or "")
    if not method:
        found = _ICS_METHOD.search(part.get_payload(decode=True) or b"")
        method = found[1].decode("ascii") if found else ""
    return method.lower()


def hashed(prefix: str, value: str) -> str:
    return f"{prefix}_{hashlib.sha256(value.strip().lower().encode('utf-8')).hexdigest()[:HEX]}"


def mail_id(address: str) -> str:
    """The author id for an e-mail address: never the address itself."""
    return hashed("mail", address)


def clean_subject(subject: str) -> str:
    return " ".join(_REPLY_PREFIX.sub("", subject).split())


# ---------------------------------------------------------------------------------------------
# Bodies


class _HtmlText(HTMLParser):
    """Text of an HTML mail, crudely: block elements break lines, quoted parts are left out."""

    BLOCKS = frozenset("p div li tr h1 h2 h3 h4 h5 h6 pre table ul ol hr".split())
    HIDDEN = frozenset("script style head title".split())
    QUOTE_CLASSES = ("gmail_quote", "gmail_signature", "moz-signature", "moz-cite-prefix", "yahoo_quoted")

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.stack: list[tuple[str, bool]] = []  # (tag, hides its content)
        self.trailing = 0  # line breaks at the end of what is written

    @property
    def hidden(self) -> bool:
        return any(h for _, h in self.stack)

    def emit(self, text: str) -> None:
        if text and not self.hidden:
            self.parts.append(text)
            stripped = text.rstrip(" \n")
            tail = text[len(stripped) :].count("\n")
            self.trailing = tail if stripped else self.trailing + tail

    def newlines(self, n: int) -> None:
        """End what is written so far with at least `n` line breaks (none at the very start)."""
        if self.parts:
            self.emit("\n" * max(0, n - self.trailing))

    def handle_starttag(self, tag, attrs):
        cls = " ".join(v or "" for k, v in attrs if k == "class")
        hides = tag in self.HIDDEN or tag == "blockquote" or any(c in cls for c in self.QUOTE_CLASSES)
        if tag == "br":
            self.emit("\n")
        elif tag in self.BLOCKS:
            self.newlines(1)
        if tag not in ("br", "hr", "img", "meta", "link", "input", "wbr"):
            self.stack.append((tag, hides))

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                break
        if tag in self.BLOCKS:
            self.newlines(2 if tag == "p" else 1)

    def handle_data(self, data):
        self.emit(re.sub(r"[ \t\r\n]+", " ", data))


def html_to_text(html: str) -> str:
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    lines = [line.strip() for line in "".join(parser.parts).replace("\xa0", " ").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def unflow(text: str, delsp: bool) -> str:
    """RFC 3676 format=flowed: a line ending in a space continues on the next one."""
    def depth(line: str) -> int:
        return len(line) - len(line.lstrip(">"))

    out: list[str] = []
    for line in text.split("\n"):
        if line != "-- " and line.startswith(" "):
            line = line[1:]  # space-stuffing
        prev, d = (out[-1] if out else None), depth(line)
        if prev is not None and prev.endswith(" ") and prev != "-- " and depth(prev) == d:
            out[-1] = (prev[:-1] if delsp else prev) + (line[d:].removeprefix(" ") if d else line)
        else:
            out.append(line)
    return "\n".join(out)


def strip_quotes(text: str) -> tuple[str, bool]:
    """(the owner's own text, whether a forwarded mail began in it)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out: list[str] = []
    forward = False
    i = 0
    while i < len(lines):
        line = lines[i]
        s = line.strip()
        if _SIGNATURE.match(line.rstrip("\n")) or _ORIGINAL.match(s):
            break
        if _FORWARD.match(s):
            forward = True
            break
        if (_OUTLOOK_RULE.match(s) and i + 1 < len(lines) and _OUTLOOK_FROM.match(lines[i + 1])) or (
            _OUTLOOK_FROM.match(s) and any(_OUTLOOK_NEXT.match(n) for n in lines[i + 1 : i + 4])
        ):
            break
        # "On <date>, <name> wrote:" (wrapped over up to three lines), or "<name> wrote:", just
        # above a quote or the end of the text
        end = next((j for j in range(i, min(i + 3, len(lines))) if lines[j].rstrip().endswith(":")), None)
        if (end is not None and all(x.strip() for x in lines[i : end + 1])
                and next((n.strip() for n in lines[end + 1 :] if n.strip()), ">").startswith(">")):
            head = " ".join(x.strip() for x in lines[i : end + 1])
            if (_ATTRIBUTION.match(head) or (end == i and _WROTE.search(s)) or _WROTE_AFTER_DATE.match(head)
                    or _ADDRESS_COLON.match(head)):
                i = end + 1
                continue
        if s.startswith(">"):
            i += 1
            continue
        out.append(line.rstrip())
        i += 1
    while out and not out[-1].strip():
        out.pop()
    while out and _FOOTER.match(out[-1]):
        out.pop()
        while out and not out[-1].strip():
            out.pop()
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip(), forward


# ---------------------------------------------------------------------------------------------
# The reader


class MboxReader(Reader):
    format = "mbox"

    @classmethod
    def sniff(cls, path: Path, head: str) -> bool:
        if not head.startswith("From "):
            return False
        first_lines = head.split("\n", 12)[1:12]
        headers = [line for line in first_lines if _HEADER_LINE.match(line)]
        return len(headers) >= 2 and bool(_KNOWN_HEADERS.search(head[: head.find("\n\n") if "\n\n" in head else None]))

    def read(self, owners: Sequence[str]) -> Iterator[Message]:
        wanted = {o.strip().casefold() for o in owners if o.strip()}
        owner_ids = {mail_id(o) for o in wanted if "@" in o} | {o for o in wanted if o.startswith("mail_")}
        starts, senders = self._scan()
        # An address once seen under an owner name is the owner's, also where it has no name.
        owner_ids |= {mail_id(addr) for name, addr in senders if name.casefold() in wanted}
        try:
            box = mailbox.mbox(str(self.path), create=False)
        except (OSError, mailbox.Error) as e:
            raise IngestError(f"{self.path}: cannot read the mbox: {e}") from e
        try:
            for index, key in enumerate(box.iterkeys()):
                line = starts[index] if index < len(starts) else None
                where = f"mail #{index + 1}" + (f" (line {line})" if line else "")
                try:
                    raw = box.get_bytes(key)
                    _check_header_lengths(raw)
                    msg = email.message_from_bytes(raw, policy=policy.default)
                    noise = noise_reason(msg)
                    if noise is None:
                        message = self._message(msg, index, wanted, owner_ids)
                except _BadMail as e:
                    self.skip("corrupt", where, str(e))
                    continue
                except Exception as e:  # noqa: BLE001 - the email package raises many kinds on broken mail
                    self.skip("corrupt", where, f"cannot parse the mail ({type(e).__name__})")
                    continue
                if noise is not None:
                    self.stats.skipped[noise] += 1  # counted, not an error: nothing is wrong with the file
                    log.debug("not writing, passed over", file=str(self.path), where=where, reason=noise)
                    continue
                self.stats.messages += 1
                yield message
        finally:
            box.close()

    def senders(self) -> set[tuple[str, str]]:
        """Every (display name, address) in a From header of the file: who wrote in it, without
        reading the mails (`prepare --list-authors` shows addresses, not their hashes)."""
        return self._scan()[1]

    def _scan(self) -> tuple[list[int], set[tuple[str, str]]]:
        """One cheap pass before `mailbox`'s: the line of every "From " separator (found as
        `mailbox` finds them, for error messages) and every (display name, address) in a From
        header."""
        starts: list[int] = []
        senders: set[tuple[str, str]] = set()
        in_headers = False
        field: list[bytes] = []

        def sender(value: list[bytes]) -> None:
            header = b"".join(value).decode("utf-8", errors="replace")
            if len(header) > MAX_PARSED_HEADER_CHARS:
                return  # the mail is skipped, and named, when read
            try:
                parsed = policy.default.header_factory("from", header.split(":", 1)[1].strip())
                for a in parsed.addresses:
                    if a.addr_spec and "@" in a.addr_spec:
                        senders.add((" ".join(a.display_name.split()), a.addr_spec))
            except Exception:  # noqa: BLE001 - a broken header here is found again, and named, when read
                pass

        try:
            with open(self.path, "rb") as f:
                for number, line in enumerate(f, start=1):
                    if line.startswith(b"From "):
                        starts.append(number)
                        in_headers, field = True, []
                        continue
                    if not in_headers:
                        continue
                    if field and line[:1] in (b" ", b"\t"):
                        field.append(line.rstrip(b"\r\n"))
                        continue
                    if field:
                        sender(field)
                        field = []
                    if not line.strip():
                        in_headers = False
                    elif line[:5].lower() == b"from:":
                        field = [line.rstrip(b"\r\n")]
        except OSError as e:
            raise IngestError(f"{self.path}: cannot read: {e.strerror or e}") from e
        return starts, senders

    def _message(self, msg: EmailMessage, index: int, wanted: set[str], owner_ids: set[str]) -> Message:
        sender = msg.get("From")
        addresses = getattr(sender, "addresses", ()) if sender is not None else ()
        address = next((a for a in addresses if a.addr_spec and "@" in a.addr_spec), None)
        if address is None:
            name, addr = email.utils.parseaddr(str(sender or ""))
            if "@" not in addr:
                raise _BadMail("no From address")
            display, addr_spec = name, addr
        else:
            display, addr_spec = address.display_name, address.addr_spec
        display = " ".join(str(display or "").split())
        author_id = mail_id(addr_spec)
        author = display if display and "@" not in display else author_id

        date = msg.get("Date")
        if date is None or not str(date).strip():
            raise _BadMail("no Date header")
        try:
            ts = email.utils.parsedate_to_datetime(str(date))
        except (TypeError, ValueError, IndexError) as e:
            raise _BadMail("the Date header is not a date") from e
        if ts is None:
            raise _BadMail("the Date header is not a date")
        ts = ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)

        subject = " ".join(self._header(msg, "Subject").split())
        title = clean_subject(subject) or "(no subject)"
        body, has_body = self._body(msg)
        text, forward_marker = strip_quotes(body)
        has_attachments = any(True for _ in msg.iter_attachments()) if msg.is_multipart() else False
        return Message(
            source="mail",
            chat_id=self._thread(msg, title),
            chat_name=title,
            msg_id=hashed("msg", str(msg["Message-ID"]).strip()) if msg.get("Message-ID") else f"#{index + 1}",
            author_id=author_id,
            author=author,
            is_owner=author_id in owner_ids or (bool(display) and display.casefold() in wanted),
            ts=ts,
            text=text,
            forwarded=not text and (forward_marker or bool(_FWD_SUBJECT.match(subject))),
            media_only=not has_body and has_attachments,
            kind="post",
            title=title,
        )

    def _header(self, msg: EmailMessage, name: str) -> str:
        """A header as text; raw 8-bit bytes (old clients did not encode them) are read as
        UTF-8, else in the mail's own charset, instead of becoming U+FFFD."""
        value = str(msg.get(name) or "")
        if "\ufffd" not in value:
            return value
        for key, raw in msg.raw_items():
            if key.lower() == name.lower() and isinstance(raw, str):
                data = raw.encode("ascii", "surrogateescape")
                charsets = ["utf-8", msg.get_content_charset() or "", *(msg.get_charsets() or []), "latin-1"]
                for charset in filter(None, charsets):
                    try:
                        text = data.decode(charset)
                    except (LookupError, UnicodeDecodeError):
                        continue
                    self.stats.repaired["raw_8bit_header"] += 1
                    return " ".join(text.split())
        return value

    @staticmethod
    def _thread(msg: EmailMessage, title: str) -> str:
        for header in ("References", "In-Reply-To", "Message-ID"):
            ids = re.findall(r"<[^<>\s]+>", str(msg.get(header) or ""))
            if ids:
                return hashed("thread", ids[0])
        return hashed("thread", title.casefold())

    def _body(self, msg: EmailMessage) -> tuple[str, bool]:
        """(text, whether the mail had a text body at all)."""
        part = msg.get_body(preferencelist=("plain",))
        if part is not None:
            # mbox escapes a body line starting "From " as ">From ": that is her text, not a quote
            text = _FROM_ESCAPED.sub(r"\1", self._decode(part))
            if str(part.get_param("format", "")).lower() == "flowed":
                text = unflow(text.replace("\r\n", "\n"), str(part.get_param("delsp", "")).lower() == "yes")
            if text.strip():
                return text, True
        html = msg.get_body(preferencelist=("html",))
        if html is not None:  # no plain part, or an empty one
            self.stats.repaired["text_from_html"] += 1
            return html_to_text(self._decode(html)), True
        return "", part is not None

    def _decode(self, part: EmailMessage) -> str:
        try:
            return part.get_content()
        except (LookupError, UnicodeError, ValueError, AssertionError):
            # An unknown or wrong charset: the bytes as UTF-8 where they are, U+FFFD where not.
            self.stats.repaired["bad_charset"] += 1
            payload = part.get_payload(decode=True) or b""
            return payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else str(payload)


def _check_header_lengths(raw: bytes) -> None:
    """_BadMail for a mail (or a part of it) whose From or MIME header is past MAX_PARSED_HEADER_CHARS."""
    for m in _PARSED_HEADER.finditer(raw):
        if len(m[0]) > MAX_PARSED_HEADER_CHARS:
            name = m[0].split(b":", 1)[0].decode("ascii", "replace").strip()
            raise _BadMail(f"a {name} header of {len(m[0]):,} characters (a mail program writes at most "
                           f"{MAX_PARSED_HEADER_CHARS:,})")


class _BadMail(ValueError):
    """One mail that lacks what a post needs."""
