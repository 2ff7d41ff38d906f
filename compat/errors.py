"""The exceptions the command-line parser raises instead of returning.

Every fault in what the user typed -- an unknown option, a malformed
``key=value`` list, a value of the wrong type, a display that refers to
a missing object -- becomes an :class:`OptionError` naming the option as
typed.  Nothing else escapes the parser, whatever the input.  A request for
information (``-h``, ``-version``, ``-vnc help``) is a
:class:`HelpRequest`: print its text and exit successfully.

This module knows nothing about sockets, certificates or VNC.
"""

from __future__ import annotations

__all__ = ["OptionError", "HelpRequest"]


class OptionError(Exception):
    """A command-line error in QEMU's form: ``<option as typed>: <message>``.

    ``option`` is the option as the user typed it (``-vnc :1,frob=on``),
    or just the option name when there is no argument (``-frob``).
    ``message`` uses QEMU's wording where QEMU has one.  ``hint``, when
    given, is vncd's short advice and is shown in parentheses, as
    :class:`creds.objects.ObjectError` does.
    """

    def __init__(self, option: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(option, message)
        self.option = option
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        text = f"{self.option}: {self.message}"
        if self.hint:
            text += f" (hint: {self.hint})"
        return text


class HelpRequest(Exception):
    """The command line asked for information instead of a server.

    ``text`` is what to print on standard output (it ends with a newline);
    the program then exits with status 0, as QEMU does.
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text
