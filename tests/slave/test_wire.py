"""Tests of what may cross the wire (lp_services.protocol.wire)."""

import xmlrpc.client

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from lp_services.protocol.wire import wire_name, wire_text, wire_value

# Any str Python can hold, lone surrogates (non-UTF-8 file names) included
# (Hypothesis leaves them out of characters(): added by hand).
_any_text = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF)
                    | st.sampled_from(["\udcff", "\ud800", "\x00", "\r",
                                       "\x9b", "\ufffe"]), max_size=12)


def round_trip(value):
    """``value`` sent as an XML-RPC answer and parsed as the master does."""
    body = xmlrpc.client.dumps((value,), methodresponse=True, allow_none=True)
    return xmlrpc.client.loads(body.encode("utf-8"))[0][0]


class WireTests(SynchronousTestCase):
    """Every string in an answer survives encoding and parsing."""

    @settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.dictionaries(_any_text, _any_text | st.lists(_any_text,
                                                           max_size=3),
                           max_size=4))
    def test_any_answer_round_trips(self, value):
        """wire_value of anything made of strings encodes as UTF-8 and
        parses back; strings that were already safe are unchanged."""
        safe = wire_value(value)
        self.assertEqual(round_trip(safe), safe)
        for key, item in value.items():
            if wire_text(key) == key and isinstance(item, str) \
                    and wire_text(item) == item:
                self.assertEqual(safe[key], item)

    def test_names(self):
        """Non-UTF-8 (surrogate-escaped), control and non-character names
        are refused with a reason; ordinary names, accents included, pass."""
        self.assertEqual(wire_name("bad\udcffname"), "not valid UTF-8")
        self.assertIn("U+009B", wire_name("esc\x9bname"))
        self.assertIn("U+FFFE", wire_name("x\ufffe"))
        self.assertIsNone(wire_name("h\u00e9llo_1.0-2.deb"))
