"""Tests of the job-type registry and the built-in types' validation."""

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from lp_services.job.interfaces import IJobType
from lp_services.job.registry import (
    DuplicateJobType, InvalidJobData, JobType, JobTypeRegistry,
    UnknownJobType, job_types, load_modules)


class Example(JobType):
    name = "example"

    def run(self, data, context):
        pass


class RegistryTests(SynchronousTestCase):
    """Types register by name; 'build' never."""

    def test_register_and_get(self):
        """A registered type is found by name and listed."""
        registry = JobTypeRegistry()
        example = Example()
        registry.register(example)
        self.assertIs(registry.get("example"), example)
        self.assertEqual(registry.names(), ["example"])
        self.assertIn("example", registry)

    def test_build_is_reserved(self):
        """No type may be called 'build': builds are the buildmaster's."""
        registry = JobTypeRegistry()
        bad = Example()
        bad.name = "build"
        error = self.assertRaises(ValueError, registry.register, bad)
        self.assertIn("reserved", str(error))

    def test_malformed_name(self):
        """Names must fit the job_type CHECK."""
        bad = Example()
        bad.name = "Bad Name"
        self.assertRaises(ValueError, JobTypeRegistry().register, bad)

    def test_duplicate(self):
        """A second type under a taken name is refused; the same is fine."""
        registry = JobTypeRegistry()
        first = Example()
        registry.register(first)
        registry.register(first)
        self.assertRaises(DuplicateJobType, registry.register, Example())

    def test_unknown(self):
        """An unknown name raises UnknownJobType listing the known ones."""
        registry = JobTypeRegistry()
        registry.register(Example())
        error = self.assertRaises(UnknownJobType, registry.get, "nope")
        self.assertIn("example", str(error))

    def test_must_provide_interface(self):
        """Objects that do not provide IJobType are refused."""
        self.assertRaises(Exception, JobTypeRegistry().register, object())

    def test_builtins(self):
        """The built-in types register and provide IJobType."""
        load_modules()
        for name in ("noop", "sleep", "http-notify", "library-gc"):
            self.assertTrue(verifyObject(IJobType, job_types.get(name)))
        self.assertNotIn("build", job_types)


class ValidationTests(SynchronousTestCase):
    """Built-in types reject data they cannot run."""

    def setUp(self):
        load_modules()

    def test_sleep(self):
        """sleep needs a sane number of seconds."""
        sleep = job_types.get("sleep")
        sleep.validate({"seconds": 1.5})
        for bad in ({}, {"seconds": -1}, {"seconds": "1"}, {"seconds": True},
                    [1]):
            self.assertRaises(InvalidJobData, sleep.validate, bad)

    def test_http_notify(self):
        """http-notify needs an http(s) URL and a payload."""
        notify = job_types.get("http-notify")
        notify.validate({"url": "http://127.0.0.1:1/x", "payload": {}})
        for bad in ({"payload": {}}, {"url": "ftp://x/", "payload": 1},
                    {"url": "http://x/"},
                    {"url": "http://x/", "payload": 1, "timeout": 0},
                    {"url": "http://x/", "payload": 1, "headers": {"a": 1}}):
            self.assertRaises(InvalidJobData, notify.validate, bad)

    def test_library_gc(self):
        """library-gc's age must be a non-negative number."""
        gc = job_types.get("library-gc")
        gc.validate({})
        gc.validate({"older_than_days": 0.5})
        self.assertRaises(InvalidJobData, gc.validate, {"older_than_days": -1})
