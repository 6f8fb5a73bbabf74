"""Tests of scoring (lp_services.buildmaster.scoring) and failure blame
(lp_services.buildmaster.blame)."""

from datetime import timedelta

from twisted.trial.unittest import SynchronousTestCase

from lp_services.buildmaster.blame import Action, judge_failure
from lp_services.buildmaster.scoring import (
    ScoreInputs,
    UnknownBuildType,
    base_score,
    effective_score,
    sort_key,
    sort_key_for_score,
)
from lp_services.testing.clock import EPOCH


class ScoringTests(SynchronousTestCase):
    """The documented formula, ageing and pinning."""

    def test_formula(self):
        """Type base + urgency + private + pocket + component + archive."""
        self.assertEqual(base_score(ScoreInputs("script")), 1500)
        self.assertEqual(base_score(ScoreInputs(
            "binarypackage", "emergency", True, "security", "main", 7)),
            1500 + 3000 + 10000 + 2500 + 1000 + 7)

    def test_unknown_inputs(self):
        """Unknown type, urgency, pocket or component raise."""
        self.assertRaises(UnknownBuildType, base_score, ScoreInputs("x"))
        self.assertRaises(ValueError, base_score, ScoreInputs("script", "x"))
        self.assertRaises(ValueError, base_score,
                          ScoreInputs("script", pocket="x"))

    def test_effective_score_ages(self):
        """A build's effective score grows one point a minute."""
        key = sort_key(1500, EPOCH)
        self.assertEqual(effective_score(key, EPOCH), 1500)
        self.assertEqual(effective_score(key, EPOCH + timedelta(hours=1)),
                         1560)

    def test_no_starvation(self):
        """An old low build outranks a new higher one once it has waited
        longer than the difference, and the order of two waiting builds
        never changes."""
        old_low = sort_key(base_score(ScoreInputs("script", "low")), EPOCH)
        for minutes, expected_old_first in ((499, False), (501, True)):
            later = EPOCH + timedelta(minutes=minutes)
            new_medium = sort_key(base_score(ScoreInputs("script")), later)
            self.assertEqual(old_low > new_medium, expected_old_first)

    def test_pin(self):
        """A pinned score reads back as SCORE at the time of pinning."""
        now = EPOCH + timedelta(days=3)
        self.assertEqual(effective_score(sort_key_for_score(42, now), now),
                         42)


class BlameTests(SynchronousTestCase):
    """Launchpad's judge_failure table."""

    def test_table(self):
        """Ties retry then reset the build; builder worse -> reset build
        and dirty builder, disable at 5; build worse -> fail build."""
        N, R, F = Action.NOTHING, Action.RESET, Action.FAIL
        self.assertEqual(judge_failure(1, 1), (N, N))
        self.assertEqual(judge_failure(1, 1, retry=False), (N, R))
        self.assertEqual(judge_failure(3, 3), (N, R))
        self.assertEqual(judge_failure(2, 1), (R, R))
        self.assertEqual(judge_failure(4, 0), (R, R))
        self.assertEqual(judge_failure(5, 0), (F, R))
        self.assertEqual(judge_failure(1, 2), (N, F))
