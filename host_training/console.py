"""Reading lines from the terminal so that Ctrl-C always stops, and only where stopping is safe.

Python's own Ctrl-C raises KeyboardInterrupt wherever the main thread happens to be, and only
once it runs Python code again. Both hurt a program that saves as it goes: it can land between
reading an answer and saving it (the answer is lost), and a Ctrl-C that lands after the prompt
is written but before the read blocks sets the interpreter's flag and interrupts nothing, so
input() then waits for a line that never comes (the line discipline threw the typed text away).

While a `CtrlC` is entered, SIGINT only notes itself, and the interpreter's C handler writes a
byte to a pipe the moment the signal arrives (signal.set_wakeup_fd). `Console.read` waits on the
terminal and that pipe together, so it wakes whenever the Ctrl-C came, before or during the
wait, and raises KeyboardInterrupt there: between questions, never inside a save.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import sys
import threading

import structlog

log = structlog.get_logger(__name__)


class CtrlC:
    """SIGINT noted instead of raised while entered (in the main thread; elsewhere Python has no
    handlers and nothing changes)."""

    def __init__(self) -> None:
        self.seen = False
        self.fd = -1  # the pipe's end to wait on; -1 when not active
        self._w = -1

    def __enter__(self) -> CtrlC:
        if threading.current_thread() is not threading.main_thread():
            return self
        self.fd, self._w = os.pipe()
        for fd in (self.fd, self._w):
            os.set_blocking(fd, False)  # set_wakeup_fd's rule; and draining must not block
        self._old_fd = signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)
        self._old_handler = signal.signal(signal.SIGINT, self._note)
        return self

    def _note(self, signum, frame) -> None:
        self.seen = True

    def pressed(self) -> bool:
        """Whether Ctrl-C came since entering. The pipe is asked too: its byte is written at once,
        the handler above runs only when the main thread next runs Python code."""
        if self.fd >= 0:
            try:
                while data := os.read(self.fd, 512):
                    self.seen = self.seen or signal.SIGINT in data
            except BlockingIOError:
                pass
        return self.seen

    def check(self) -> None:
        """KeyboardInterrupt if Ctrl-C came: call it where stopping loses nothing."""
        if self.pressed():
            log.debug("console.ctrl_c")
            raise KeyboardInterrupt

    def __exit__(self, *exc) -> None:
        if self.fd < 0:
            return
        old = self._old_handler
        signal.signal(signal.SIGINT, signal.SIG_DFL if old is None else old)  # None: set outside Python
        signal.set_wakeup_fd(self._old_fd)
        os.close(self.fd)
        os.close(self._w)
        self.fd = self._w = -1


class Console:
    """Lines typed on standard input (the terminal's line editing is the kernel's, as with
    input()): `read` shows the prompt and returns a line without its newline; EOFError at the
    end of the input or when the terminal is gone; KeyboardInterrupt on Ctrl-C, however it lands."""

    def __init__(self, ctrl_c: CtrlC) -> None:
        self.ctrl_c = ctrl_c
        self.fd = sys.stdin.fileno()
        self.encoding = sys.stdin.encoding or "utf-8"
        self._buf = b""

    def read(self, prompt: str) -> str:
        self.ctrl_c.check()
        sys.stdout.write(prompt)
        sys.stdout.flush()
        while (end := self._buf.find(b"\n")) < 0:
            self.ctrl_c.check()
            waits = [self.fd] + ([self.ctrl_c.fd] if self.ctrl_c.fd >= 0 else [])
            if self.fd not in select.select(waits, [], [])[0]:
                continue  # the pipe: the check above says why
            try:
                chunk = os.read(self.fd, 65536)
            except OSError as e:  # EIO: the terminal has hung up
                if e.errno != errno.EIO:
                    raise
                chunk = b""
            if not chunk:
                if not self._buf:
                    raise EOFError
                end = len(self._buf)  # a last line without its newline, as input() gives it
                break
            self._buf += chunk
        line, self._buf = self._buf[:end], self._buf[end + 1:]
        return line.decode(self.encoding, errors="replace")
