"""The agent's transition table (lp_services.slave.state)."""

from twisted.trial.unittest import SynchronousTestCase

from lp_services.protocol.states import BuilderStatus, BuildStatus
from lp_services.slave.state import IllegalStateChange, StateMachine, TRANSITIONS

LEGAL = {
    (BuilderStatus.IDLE, BuilderStatus.BUILDING),
    (BuilderStatus.BUILDING, BuilderStatus.WAITING),
    (BuilderStatus.BUILDING, BuilderStatus.ABORTING),
    (BuilderStatus.ABORTING, BuilderStatus.WAITING),
    (BuilderStatus.WAITING, BuilderStatus.IDLE),
}


class TransitionTests(SynchronousTestCase):
    """Only the protocol's edges are legal."""

    def test_table_is_exactly_the_legal_edges(self):
        """TRANSITIONS lists the five edges and nothing else."""
        edges = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
        self.assertEqual(edges, LEGAL)

    def test_every_legal_edge_moves(self):
        """Each legal edge moves the machine to its target."""
        for source, target in LEGAL:
            machine = StateMachine(source)
            machine.move(target)
            self.assertIs(machine.state, target)

    def test_every_illegal_edge_raises_and_keeps_state(self):
        """Each of the 11 illegal edges raises IllegalStateChange naming both
        states, and the state is unchanged."""
        illegal = [(a, b) for a in BuilderStatus for b in BuilderStatus
                   if (a, b) not in LEGAL]
        self.assertEqual(len(illegal), 11)
        for source, target in illegal:
            machine = StateMachine(source)
            e = self.assertRaises(IllegalStateChange, machine.move, target)
            self.assertIn(source.value, str(e))
            self.assertIn(target.value, str(e))
            self.assertIs(machine.state, source)

    def test_protocol_strings(self):
        """The enum values are the protocol's literal strings."""
        self.assertEqual(BuilderStatus.IDLE.value, "BuilderStatus.IDLE")
        self.assertEqual(BuildStatus.DEPFAIL.value, "BuildStatus.DEPFAIL")
        self.assertEqual(len(BuildStatus), 7)
