"""Bounded Range planning (lp_services.filestore.ranges), without HTTP."""

from twisted.trial.unittest import SynchronousTestCase

from lp_services.filestore.ranges import (
    MAX_HEADER, MAX_RANGES, RangeNotSatisfiable, plan_ranges, range_header)


class PlanRangesTests(SynchronousTestCase):
    """What is served for a Range header over a 100-byte file."""

    def test_no_header_or_not_bytes_serves_everything(self):
        """No header, another unit or a malformed range: the whole file."""
        for header in (None, b"items=0-1", b"bytes", b"bytes=", b"bytes=a-b",
                       b"bytes=5-2", b"bytes=-", b"bytes=1-2,x"):
            self.assertIsNone(plan_ranges(header, 100), header)

    def test_single_ranges_resolved(self):
        """first-last, first- and -suffix resolve within the file; a last
        past the end is clipped."""
        self.assertEqual(plan_ranges(b"bytes=0-9", 100), [(0, 9)])
        self.assertEqual(plan_ranges(b"bytes=90-", 100), [(90, 99)])
        self.assertEqual(plan_ranges(b"bytes=-10", 100), [(90, 99)])
        self.assertEqual(plan_ranges(b"bytes=-1000", 100), [(0, 99)])
        self.assertEqual(plan_ranges(b"bytes=50-1000", 100), [(50, 99)])

    def test_overlapping_and_touching_ranges_merge(self):
        """Overlapping or adjacent ranges become one; disjoint ones stay
        apart, sorted."""
        self.assertEqual(plan_ranges(b"bytes=0-50,10-20,40-60", 100), [(0, 60)])
        self.assertEqual(plan_ranges(b"bytes=0-9,10-19", 100), [(0, 19)])
        self.assertEqual(plan_ranges(b"bytes=50-59, 0-9", 100),
                         [(0, 9), (50, 59)])

    def test_the_attack_is_refused(self):
        """1,000 overlapping ranges (the attacker's 3 KB request) are
        refused, as is any header with more than MAX_RANGES ranges."""
        with self.assertRaises(RangeNotSatisfiable):
            plan_ranges(b"bytes=" + b",".join([b"0-"] * 1000), 100)
        many = b"bytes=" + b",".join(b"%d-%d" % (i, i)
                                     for i in range(0, 2 * MAX_RANGES + 2, 2))
        self.assertLessEqual(len(many), MAX_HEADER)
        with self.assertRaises(RangeNotSatisfiable):
            plan_ranges(many, 100)
        with self.assertRaises(RangeNotSatisfiable):
            plan_ranges(b"bytes=0-1" + b" " * MAX_HEADER, 100)

    def test_ranges_outside_the_file(self):
        """Ranges beyond the end are dropped; none left is a 416."""
        self.assertEqual(plan_ranges(b"bytes=0-1,500-600", 100), [(0, 1)])
        for header in (b"bytes=100-", b"bytes=-0", b"bytes=200-300,150-"):
            with self.assertRaises(RangeNotSatisfiable):
                plan_ranges(header, 100)
        with self.assertRaises(RangeNotSatisfiable):
            plan_ranges(b"bytes=-5", 0)

    def test_the_plan_never_exceeds_the_file(self):
        """Whatever up to MAX_RANGES ranges ask, the planned bytes are at
        most the file's size."""
        header = b"bytes=" + b",".join([b"0-99", b"-100", b"0-"] * 2)
        planned = plan_ranges(header, 100)
        self.assertEqual(planned, [(0, 99)])
        self.assertEqual(range_header([(0, 9), (20, 29)]), b"bytes=0-9,20-29")
