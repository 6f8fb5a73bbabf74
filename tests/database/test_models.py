"""Round trips of every Storm model through real PostgreSQL."""

from datetime import timedelta

from storm.database import create_database
from storm.store import Store
from twisted.trial.unittest import TestCase

from lp_services.buildmaster.enums import BuilderCleanStatus, BuildStatus
from lp_services.buildmaster.model import (
    Builder,
    BuilderProcessor,
    BuildFarmJob,
    BuildFile,
    BuildQueue,
    Chroot,
    Processor,
)
from lp_services.database.connection import storm_uri
from lp_services.database.model import SchemaRevision
from lp_services.database.models import load_models
from lp_services.filestore.model import LibraryFile
from lp_services.job.model import Job
from lp_services.job.status import JobStatus
from lp_services.testing.clock import EPOCH
from lp_services.testing.database import DatabaseTestMixin


class ModelTests(DatabaseTestMixin, TestCase):
    """Each model writes and reads back its columns."""

    def setUp(self):
        super().setUp()
        load_models()
        self.store = Store(create_database(storm_uri(self.database_url)))
        self.addCleanup(self.store.close)

    def fresh(self, cls, key):
        """Commit, forget everything, and load ``cls`` by ``key`` again."""
        self.store.commit()
        self.store.invalidate()
        self.store.reset()
        return self.store.get(cls, key)

    def test_build_graph_round_trip(self):
        """A job with its build rows, builder, chroot and files reads back."""
        s = self.store
        processor = s.add(Processor())
        processor.name = "amd64"
        builder = s.add(Builder())
        builder.name, builder.url = "bob", "http://127.0.0.1:8221/rpc"
        builder.resources = ["large", "kvm"]
        s.flush()
        link = s.add(BuilderProcessor())
        link.builder, link.processor = builder, processor
        log = s.add(LibraryFile())
        log.sha1, log.size, log.filename = "a" * 40, 10, "buildlog.txt"
        chroot = s.add(Chroot())
        chroot.processor, chroot.library_file = processor, log
        job = s.add(Job())
        job.job_type = "build"
        job.json_data = {"nested": {"list": [1, 2]}}
        job.scheduled_start = EPOCH
        s.flush()
        farm = s.add(BuildFarmJob())
        farm.job, farm.build_type, farm.processor = job, "script", processor
        farm.status, farm.log = BuildStatus.FULLYBUILT, log
        s.flush()
        queue = s.add(BuildQueue())
        queue.job, queue.build_farm_job = job, farm
        queue.build_type, queue.processor = "script", processor
        queue.builder, queue.build_cookie = builder, "cookie"
        queue.build_args = {"script": "build.sh"}
        queue.required_resources = ["large"]
        queue.estimated_duration = timedelta(minutes=7)
        result = s.add(BuildFile())
        result.build, result.library_file, result.filename = farm, log, "out.txt"
        s.flush()
        job_id = job.id

        job = self.fresh(Job, job_id)
        self.assertEqual(job.status, JobStatus.WAITING)
        self.assertEqual(job.json_data, {"nested": {"list": [1, 2]}})
        self.assertEqual(job.scheduled_start, EPOCH)
        farm = self.store.get(BuildFarmJob, job_id)
        self.assertEqual(farm.status, BuildStatus.FULLYBUILT)
        self.assertEqual(farm.log.filename, "buildlog.txt")
        queue = self.store.get(BuildQueue, job_id)
        self.assertEqual(queue.builder.name, "bob")
        self.assertEqual(queue.builder.resources, ["large", "kvm"])
        self.assertEqual(queue.builder.clean_status, BuilderCleanStatus.DIRTY)
        self.assertEqual(queue.build_args, {"script": "build.sh"})
        self.assertEqual(queue.required_resources, ["large"])
        self.assertEqual(queue.estimated_duration, timedelta(minutes=7))
        self.assertEqual(queue.build_farm_job.processor.name, "amd64")
        files = list(self.store.find(BuildFile, build_id=job_id))
        self.assertEqual([f.filename for f in files], ["out.txt"])
        self.assertEqual(self.store.find(Chroot).one().processor.name, "amd64")
        self.assertEqual(
            self.store.find(BuilderProcessor).one().builder.name, "bob")

    def test_schema_revision_model(self):
        """The revision table is readable through its model."""
        self.assertEqual(self.store.get(SchemaRevision, 0).name, "baseline")

    def test_double_dispatch_is_impossible(self):
        """The unique index refuses a second build on one builder."""
        from storm.exceptions import IntegrityError

        s = self.store
        s.execute("INSERT INTO processor (name) VALUES ('amd64')")
        s.execute("INSERT INTO builder (name, url) VALUES ('b', 'http://x')")
        for n in (1, 2):
            s.execute("INSERT INTO job (job_type) VALUES ('build')")
            s.execute("INSERT INTO build_farm_job (job, build_type, processor)"
                      " VALUES (%d, 'script', 1)" % n)
        s.execute("INSERT INTO build_queue (job, build_farm_job, build_type,"
                  " processor, builder, build_cookie)"
                  " VALUES (1, 1, 'script', 1, 1, 'c1')")
        self.assertRaises(
            IntegrityError, s.execute,
            "INSERT INTO build_queue (job, build_farm_job, build_type,"
            " processor, builder, build_cookie)"
            " VALUES (2, 2, 'script', 1, 1, 'c2')")
