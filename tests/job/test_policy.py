"""Tests of retry-delay policies (lp_services.job.policy)."""

from twisted.trial.unittest import SynchronousTestCase

from lp_services.job.policy import constant, exponential_backoff


class ExponentialBackoffTests(SynchronousTestCase):
    """exponential_backoff is a plain function of the attempt."""

    def test_doubles_from_base_without_jitter(self):
        """With no jitter: base, 2 x base, 4 x base..."""
        delay = exponential_backoff(base=5, jitter=0)
        self.assertEqual([delay(n) for n in (1, 2, 3, 4)], [5, 10, 20, 40])

    def test_capped(self):
        """Delays never exceed the cap."""
        delay = exponential_backoff(base=5, cap=30, jitter=0)
        self.assertEqual(delay(10), 30)

    def test_jitter_bounds(self):
        """Jitter spreads by at most the fraction either way."""
        low = exponential_backoff(base=10, jitter=0.2, rand=lambda: 0.0)
        high = exponential_backoff(base=10, jitter=0.2, rand=lambda: 0.999999)
        self.assertAlmostEqual(low(1), 8.0)
        self.assertAlmostEqual(high(1), 12.0, places=3)

    def test_nonsense_refused(self):
        """A shrinking factor or a jitter of 100 % is refused."""
        self.assertRaises(ValueError, exponential_backoff, factor=0.5)
        self.assertRaises(ValueError, exponential_backoff, jitter=1.0)

    def test_constant(self):
        """constant() ignores the attempt."""
        self.assertEqual({constant(3)(n) for n in range(1, 5)}, {3})
