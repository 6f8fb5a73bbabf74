"""Tests of schema creation and upgrades (lp_services.database.schema)."""

import threading

import psycopg2
from twisted.trial.unittest import TestCase

from lp_services.database import schema
from lp_services.database.schema import Patch, SchemaError, known_patches, upgrade
from lp_services.testing.database import create_test_database


def describe(url: str) -> dict:
    """A comparable description of a database's schema from the catalogs."""
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            out = {}
            cur.execute("""
                SELECT table_name, column_name, data_type, is_nullable,
                       column_default
                FROM information_schema.columns WHERE table_schema = 'public'
                ORDER BY table_name, column_name""")
            out["columns"] = cur.fetchall()
            cur.execute("""
                SELECT conrelid::regclass::text, conname,
                       pg_get_constraintdef(oid)
                FROM pg_constraint WHERE connamespace = 'public'::regnamespace
                ORDER BY 1, 2""")
            out["constraints"] = cur.fetchall()
            cur.execute("""
                SELECT tablename, indexname, indexdef FROM pg_indexes
                WHERE schemaname = 'public' ORDER BY 1, 2""")
            out["indexes"] = cur.fetchall()
            cur.execute("""
                SELECT viewname, definition FROM pg_views
                WHERE schemaname = 'public' ORDER BY 1""")
            out["views"] = cur.fetchall()
            cur.execute("""
                SELECT c.relname, a.attname, col_description(c.oid, a.attnum),
                       obj_description(c.oid, 'pg_class')
                FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
                WHERE c.relnamespace = 'public'::regnamespace
                  AND c.relkind IN ('r', 'v') AND a.attnum > 0
                ORDER BY 1, 2""")
            out["comments"] = cur.fetchall()
            cur.execute("""
                SELECT sequence_name, data_type FROM information_schema.sequences
                WHERE sequence_schema = 'public' ORDER BY 1""")
            out["sequences"] = cur.fetchall()
        return out
    finally:
        conn.close()


def applied(url: str) -> list:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT patch, name, applied_by FROM schema_revision"
                        " ORDER BY patch")
            return cur.fetchall()
    finally:
        conn.close()


class UpgradeTests(TestCase):
    """db upgrade against real, empty PostgreSQL databases."""

    def upgrade_url(self, url, **kwargs):
        conn = psycopg2.connect(url)
        try:
            return upgrade(conn, **kwargs)
        finally:
            conn.close()

    def test_fresh_database_is_created_at_latest_revision(self):
        """An empty database gets current.sql and every patch recorded."""
        url = create_test_database(empty=True)
        result = self.upgrade_url(url)
        self.assertTrue(result.created)
        self.assertEqual(result.applied, ())
        latest = known_patches()[-1].number if known_patches() else 0
        self.assertEqual(result.revision, latest)
        rows = applied(url)
        self.assertEqual(rows[0], (0, "baseline", "current"))
        self.assertEqual([r[0] for r in rows],
                         [0] + [p.number for p in known_patches()])

    def test_second_upgrade_is_a_no_op(self):
        """Running upgrade again changes nothing and says so."""
        url = create_test_database(empty=True)
        self.upgrade_url(url)
        before = (describe(url), applied(url))
        result = self.upgrade_url(url)
        self.assertFalse(result.changed)
        self.assertEqual((describe(url), applied(url)), before)

    def test_baseline_plus_patches_equals_current(self):
        """baseline.sql + every patch gives the same schema as current.sql."""
        from_scratch = create_test_database(empty=True)
        patched = create_test_database(empty=True)
        self.upgrade_url(from_scratch)
        result = self.upgrade_url(patched, from_baseline=True)
        self.assertEqual([p.number for p in result.applied],
                         [p.number for p in known_patches()])
        self.assertEqual(describe(patched), describe(from_scratch))

    def test_newer_database_is_refused_unchanged(self):
        """A database at a revision this code does not know is left alone."""
        url = create_test_database(empty=True)
        self.upgrade_url(url)
        conn = psycopg2.connect(url)
        with conn, conn.cursor() as cur:
            cur.execute("INSERT INTO schema_revision (patch, name, applied_by)"
                        " VALUES (9999, '9999-from-the-future', 'patch')")
        conn.close()
        before = (describe(url), applied(url))
        error = self.assertRaises(SchemaError, self.upgrade_url, url)
        self.assertIn("revision 9999", str(error))
        self.assertIn("newer", str(error))
        self.assertEqual((describe(url), applied(url)), before)

    def test_failing_patch_rolls_back_and_is_named(self):
        """A patch that fails leaves no trace and the error names it."""
        url = create_test_database(empty=True)
        self.upgrade_url(url)
        before = (describe(url), applied(url))
        good = known_patches()
        latest = good[-1].number if good else 0
        bad = Patch(latest + 1, "%04d-broken" % (latest + 1),
                    "CREATE TABLE half_done (x int);\nSELECT * FROM no_such_table;")
        self.patch(schema, "known_patches", lambda: good + [bad])
        error = self.assertRaises(SchemaError, self.upgrade_url, url)
        self.assertIn("%04d-broken" % (latest + 1), str(error))
        self.assertIn("no_such_table", str(error))
        self.assertEqual((describe(url), applied(url)), before)

    def test_new_patch_is_applied_once(self):
        """A pending patch is applied and recorded, then skipped next time."""
        url = create_test_database(empty=True)
        self.upgrade_url(url)
        good = known_patches()
        latest = good[-1].number if good else 0
        extra = Patch(latest + 1, "%04d-extra" % (latest + 1),
                      "CREATE TABLE extra_table (x int);")
        self.patch(schema, "known_patches", lambda: good + [extra])
        result = self.upgrade_url(url)
        self.assertEqual(result.applied, (extra,))
        self.assertEqual(applied(url)[-1], (latest + 1, extra.name, "patch"))
        self.assertFalse(self.upgrade_url(url).changed)

    def test_concurrent_upgrades_are_safe(self):
        """Two upgrades of one empty database at once: one creates, one waits."""
        url = create_test_database(empty=True)
        results, errors = [], []

        def run():
            try:
                results.append(self.upgrade_url(url))
            except Exception as error:  # reported below
                errors.append(error)

        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        self.assertEqual(errors, [])
        self.assertEqual(sorted(r.created for r in results), [False, True])
        self.assertEqual(applied(url)[0][0], 0)

    def test_views_are_reapplied_when_changed(self):
        """A changed views.sql is applied by the next upgrade, once."""
        url = create_test_database(empty=True)
        self.upgrade_url(url)
        original = schema.read_sql

        def read_sql(name):
            text = original(name)
            if name == "views.sql":
                text += "\nDROP VIEW IF EXISTS probe_view;" \
                        "\nCREATE VIEW probe_view AS SELECT 1 AS one;\n"
            return text

        self.patch(schema, "read_sql", read_sql)
        self.assertTrue(self.upgrade_url(url).views_changed)
        self.assertIn("probe_view", [v[0] for v in describe(url)["views"]])
        self.assertFalse(self.upgrade_url(url).changed)


class KnownPatchesTests(TestCase):
    """The shipped patch files."""

    def test_patches_are_numbered_consecutively(self):
        """Patch numbers run 1, 2, 3, ... with no gaps."""
        numbers = [p.number for p in known_patches()]
        self.assertEqual(numbers, list(range(1, len(numbers) + 1)))
