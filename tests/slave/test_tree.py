"""Tests of removing what a build left (lp_services.slave.tree)."""

import os
import subprocess
from pathlib import Path

from twisted.trial.unittest import TestCase

from lp_services.slave.tree import RemoveFailed, remove_tree


def deep_tree(top: Path, depth: int, name: str = "d" * 20) -> None:
    """``depth`` nested directories under ``top``, made with directory fds
    (the path is far longer than PATH_MAX), a file at the bottom."""
    top.mkdir()
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        with open(os.open("bottom", os.O_WRONLY | os.O_CREAT, 0o600,
                          dir_fd=fd), "w") as f:
            f.write("x")
    finally:
        os.close(fd)


class RemoveTreeTests(TestCase):
    """remove_tree deletes any tree a build can make, and says so when it
    cannot."""

    def setUp(self):
        self.base = Path(self.mktemp()).resolve()
        self.base.mkdir(parents=True)

    def test_deeper_than_the_recursion_limit_and_path_max(self):
        """A 3,000-level tree (paths of 63,000 bytes) is removed."""
        deep_tree(self.base / "t", 3000)
        remove_tree(self.base / "t")
        self.assertEqual(os.listdir(self.base), [])

    def test_links_are_never_followed(self):
        """Links to a directory and a file outside are removed, their
        targets stay."""
        outside = self.base / "outside"
        outside.mkdir()
        (outside / "keep").write_text("precious")
        tree = self.base / "t"
        (tree / "sub").mkdir(parents=True)
        (tree / "sub" / "dirlink").symlink_to(outside)
        (tree / "filelink").symlink_to(outside / "keep")
        os.link(outside / "keep", tree / "hardlink")
        remove_tree(tree)
        self.assertFalse(tree.exists())
        self.assertEqual((outside / "keep").read_text(), "precious")

    def test_a_link_as_the_top_is_unlinked(self):
        """remove_tree on a symbolic link removes the link only."""
        (self.base / "target").mkdir()
        (self.base / "target" / "f").write_text("x")
        (self.base / "link").symlink_to(self.base / "target")
        remove_tree(self.base / "link")
        self.assertEqual(os.listdir(self.base), ["target"])
        self.assertTrue((self.base / "target" / "f").exists())

    def test_any_owner_and_no_permissions(self):
        """Directories of mode 0 owned by unmapped ids (100000+, as the
        sandbox's id map leaves them) and special files are removed."""
        tree = self.base / "t"
        (tree / "a" / "b").mkdir(parents=True)
        (tree / "a" / "b" / "f").write_text("x")
        os.mkfifo(tree / "a" / "fifo")
        for path in (tree / "a" / "b" / "f", tree / "a" / "b", tree / "a"):
            os.chown(path, 100000, 100000)
            os.chmod(path, 0)
        remove_tree(tree)
        self.assertFalse(tree.exists())

    def test_missing_is_fine_and_a_file_is_removed(self):
        """A missing path is no error; a plain file is unlinked."""
        remove_tree(self.base / "nothing")
        (self.base / "f").write_text("x")
        remove_tree(self.base / "f")
        self.assertEqual(os.listdir(self.base), [])

    def test_failure_is_loud(self):
        """A file that cannot be removed (immutable) makes RemoveFailed
        naming the tree; the rest of the walk stops there."""
        tree = self.base / "t"
        (tree / "sub").mkdir(parents=True)
        (tree / "sub" / "stuck").write_text("x")
        if subprocess.run(["chattr", "+i", str(tree / "sub" / "stuck")],
                          capture_output=True).returncode != 0:
            self.skipTest("chattr +i is not supported here")
        self.addCleanup(subprocess.run,
                        ["chattr", "-i", str(tree / "sub" / "stuck")])
        e = self.assertRaises(RemoveFailed, remove_tree, tree)
        self.assertIn(str(tree), str(e))
        self.assertIn("sub", str(e))
        self.assertTrue((tree / "sub" / "stuck").exists())
