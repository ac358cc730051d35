"""Text that is safe on a terminal: the characters a terminal obeys, shown as escapes.

Values that come from the API or from a query (a FailureReason, an image's description, an error
message, a cell) can hold characters a terminal acts on instead of showing: ESC sequences that
clear the screen or set the window title (`\\x1b[2J`, `\\x1b]0;title\\x07`), the one-byte CSI
(U+009B), and bidirectional overrides that make a line read in another order (U+202E). Everything
printed for people (tables, `status`, log lines, FAILED lines, error lines) goes through
`printable`, which shows each of them as a visible escape: `\\x1b`, `\\x9b`, `\\u202e`, and `\\n`,
`\\r`, `\\t` for the common three. A backslash is left as it is: the escapes are for reading, and
JSON and CSV output keep the exact values.

JSON output goes through `inert_json` instead: Python's encoder already escapes C0 controls, and
that function escapes DEL, C1 and the bidirectional controls too, as `\\u009b` and the like,
which a JSON parser reads back as the same characters. The value is unchanged; the bytes on the
terminal are inert.
"""

from __future__ import annotations

__all__ = ["CONTROL_CHARACTERS", "inert_json", "printable"]

_BIDI_CONTROLS = (
    0x061C,  # ARABIC LETTER MARK
    0x200E,  # LEFT-TO-RIGHT MARK
    0x200F,  # RIGHT-TO-LEFT MARK
    *range(0x202A, 0x202F),  # LRE, RLE, PDF, LRO, RLO: embeddings and overrides
    *range(0x2066, 0x206A),  # LRI, RLI, FSI, PDI: isolates
)
CONTROL_CHARACTERS = frozenset(
    chr(code) for code in (*range(0x20), 0x7F, *range(0x80, 0xA0), *_BIDI_CONTROLS)
)
"""What a terminal may act on rather than show: C0 controls, DEL, C1 controls, bidi controls."""

_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(character: str) -> str:
    code = ord(character)
    return _SHORT.get(character) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


_ONE_LINE = {ord(character): _escape(character) for character in CONTROL_CHARACTERS}
_MULTILINE = {code: text for code, text in _ONE_LINE.items() if chr(code) not in "\n\t"}
# JSON text holds these only inside strings (its syntax is ASCII), where \uXXXX means them.
_JSON = {
    ord(character): f"\\u{ord(character):04x}"
    for character in CONTROL_CHARACTERS
    if ord(character) >= 0x7F
}


def printable(text: str, *, multiline: bool = False) -> str:
    """`text` with every control character shown as a visible escape; with `multiline`,
    newlines and tabs stay as they are (a log record's traceback), else they are escaped too (a
    table cell, a FAILED line: one line each, whatever the value holds)."""
    return text.translate(_MULTILINE if multiline else _ONE_LINE)


def inert_json(text: str) -> str:
    """JSON text (from `json.dumps(..., ensure_ascii=False)`) with DEL, C1 and bidirectional
    controls written as `\\uXXXX` escapes: the same JSON value, nothing a terminal acts on."""
    return text.translate(_JSON)
