"""The ``lp-services`` command tree (lp_services.cli.main)."""

import click
from twisted.trial.unittest import SynchronousTestCase

from lp_services.cli.main import cli

#: Commands without --json: the demo is a show for people; chroot build
#: logs a long debootstrap and prints the tarball's sha1 and path.
WITHOUT_JSON = {"demo", "chroot build"}


def leaves(group, prefix=""):
    for name, command in sorted(group.commands.items()):
        path = (prefix + " " + name).strip()
        if isinstance(command, click.Group):
            yield from leaves(command, path)
        else:
            yield path, command


class CommandTreeTests(SynchronousTestCase):
    """What holds for every command."""

    def test_json_everywhere(self):
        """Every command but the demo and chroot build takes --json."""
        missing = [path for path, command in leaves(cli)
                   if path not in WITHOUT_JSON
                   and "as_json" not in [p.name for p in command.params]]
        self.assertEqual(missing, [])
        self.assertIn("show", dict(leaves(cli)))

    def test_every_command_has_help(self):
        """Every command has a one-line help text."""
        self.assertEqual([path for path, command in leaves(cli)
                          if not (command.help or "").strip()], [])
