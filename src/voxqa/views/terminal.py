"""Text from datasets, runs, reports and servers, made safe to show on a terminal.

Labels, report sentences, study ids, file names and server error bodies are untrusted: printed
raw through rich, ``[/bold]`` is a markup error (a traceback, and an exit code that means
something else) and ``[grade 2]`` silently vanishes as a style; printed raw anywhere, ESC and
OSC sequences move the cursor, recolour, retitle the window or clear the screen. Every command
shows such text through ``markup_safe`` (rich markup) or ``printable`` (plain text): control
characters become visible escapes (``\\x1b``), markup is escaped, the rest is shown as written.
"""

from __future__ import annotations

import re

from rich.markup import escape

#: C0 controls but tab and newline, DEL, C1 controls, and the bidirectional overrides and
#: isolates (which reorder what is shown).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_CONTROL_OR_NEWLINE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _visible(match: re.Match[str]) -> str:
    char = match[0]
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def printable(text: object, one_line: bool = False) -> str:
    """``text`` with every control character written as a visible escape (ESC as ``\\x1b``);
    tab and newline are kept unless ``one_line`` (a sentence, a name: shown as ``\\n``)."""
    return (_CONTROL_OR_NEWLINE if one_line else _CONTROL).sub(_visible, str(text))


def markup_safe(text: object, one_line: bool = False) -> str:
    """``printable`` text with rich markup escaped, for ``console.print`` and table cells:
    shown literally, whatever brackets it holds."""
    return escape(printable(text, one_line))
