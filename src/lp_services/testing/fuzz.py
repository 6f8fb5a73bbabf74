"""Running a hypothesis property against a site served by this process's
reactor."""

from twisted.internet import threads

__all__ = ["run_property"]


def run_property(prop):
    """Run ``prop`` (a @given test with a blocking client) in a thread
    while the reactor serves; a Deferred. Several failures are named one
    by one, not as "2 failures"."""
    def run():
        try:
            prop()
        except BaseExceptionGroup as group:
            raise AssertionError("\n".join(
                "%s: %s" % (type(e).__name__, e)
                for e in group.exceptions)) from None
    return threads.deferToThread(run)
