"""What may cross the wire: every string in an XML-RPC answer is valid
UTF-8 and valid XML text.

A build controls much of what the agent reports (result names, the
dependencies of a DEPFAIL, the reasons downloads fail); a single lone
surrogate (what Python makes of a non-UTF-8 byte in a file name) makes the
whole answer unencodable, and a control character makes it XML the master
cannot parse. Names are checked where they are made (:func:`wire_name`:
refused, the caller skips the file with a note); free text is made safe
(:func:`wire_text`: every character XML 1.0 cannot carry becomes U+FFFD),
and :func:`wire_value` applies that to a whole answer as a last line of
defence.
"""

import re

__all__ = ["wire_name", "wire_text", "wire_value"]

# Characters XML 1.0 cannot carry, plus lone surrogates, the C1 controls
# (legal XML, but terminal escapes in a name someone will print) and \r
# (legal, but a parser turns it into \n: it would not arrive as sent).
_NOT_WIRE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff"
                       "\ufffe\uffff]")
_NOT_NAME = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def wire_name(name: str) -> str | None:
    """Why ``name`` cannot be sent as a name, or None if it can."""
    bad = _NOT_NAME.search(name)
    if bad is None:
        return None
    if "\ud800" <= bad.group() <= "\udfff":
        return "not valid UTF-8"
    return "control or non-character U+%04X" % ord(bad.group())


def wire_text(text: str) -> str:
    """``text`` with every character XML cannot carry replaced by U+FFFD."""
    return _NOT_WIRE.sub("\ufffd", text)


def wire_value(value):
    """``value`` (str, list, tuple, dict or scalar) with every string,
    keys included, passed through :func:`wire_text`."""
    if isinstance(value, str):
        return wire_text(value)
    if isinstance(value, dict):
        return {wire_value(k): wire_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [wire_value(v) for v in value]
    return value
