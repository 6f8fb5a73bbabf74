"""Tests of the job status machine (lp_services.job.status)."""

from twisted.trial.unittest import SynchronousTestCase

from lp_services.job.status import (
    TRANSITIONS,
    InvalidTransition,
    JobStatus,
    check_transition,
    transition_sources,
)

ALL_EDGES = [(a, b) for a in JobStatus for b in JobStatus]
LEGAL_EDGES = [(a, b) for a, b in ALL_EDGES if b in TRANSITIONS[a]]
ILLEGAL_EDGES = [(a, b) for a, b in ALL_EDGES if b not in TRANSITIONS[a]]


class TransitionTableTests(SynchronousTestCase):
    """The table itself."""

    def test_every_status_has_an_entry(self):
        """Every JobStatus is a key of the transition table."""
        self.assertEqual(set(TRANSITIONS), set(JobStatus))

    def test_completed_is_terminal(self):
        """Nothing leaves COMPLETED."""
        self.assertEqual(TRANSITIONS[JobStatus.COMPLETED], frozenset())

    def test_expected_legal_edges(self):
        """The legal edges are exactly the documented lifecycle."""
        self.assertEqual(
            {(a.name, b.name) for a, b in LEGAL_EDGES},
            {("WAITING", "RUNNING"), ("WAITING", "SUSPENDED"),
             ("WAITING", "FAILED"), ("RUNNING", "COMPLETED"),
             ("RUNNING", "FAILED"), ("RUNNING", "WAITING"),
             ("RUNNING", "SUSPENDED"), ("SUSPENDED", "WAITING"),
             ("SUSPENDED", "FAILED"), ("FAILED", "WAITING")})

    def test_legal_edges_pass(self):
        """check_transition accepts every legal edge."""
        for current, requested in LEGAL_EDGES:
            check_transition(current, requested)

    def test_transition_sources(self):
        """transition_sources inverts the table."""
        self.assertEqual(transition_sources(JobStatus.RUNNING), (0,))
        self.assertEqual(transition_sources(JobStatus.WAITING), (1, 3, 4))
        self.assertEqual(transition_sources(JobStatus.FAILED), (0, 1, 4))

    def test_error_message_names_both_statuses(self):
        """InvalidTransition says where from and where to."""
        error = self.assertRaises(
            InvalidTransition, check_transition,
            JobStatus.COMPLETED, JobStatus.RUNNING)
        self.assertEqual(str(error), "a job cannot go from COMPLETED to RUNNING")
        self.assertEqual(error.current, JobStatus.COMPLETED)
        self.assertEqual(error.requested, JobStatus.RUNNING)


class IllegalEdgeTests(SynchronousTestCase):
    """One test per illegal edge (generated below from the table)."""


def _make_illegal_edge_test(current, requested):
    def test(self):
        self.assertRaises(InvalidTransition, check_transition, current, requested)

    test.__doc__ = "%s -> %s raises InvalidTransition." % (
        current.name, requested.name)
    return test


for _current, _requested in ILLEGAL_EDGES:
    setattr(IllegalEdgeTests,
            "test_%s_to_%s" % (_current.name.lower(), _requested.name.lower()),
            _make_illegal_edge_test(_current, _requested))
