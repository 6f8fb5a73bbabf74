"""The ``lp-services`` command: one entry point, a group per subject.

Each subject's commands live in their own module of this package; add the
group to ``_GROUPS`` to make it reachable.
"""

import importlib

import click

from lp_services.cli.context import CLIContext

__all__ = ["cli", "main"]

# (module, attribute) of each command group, in help order.
_GROUPS = [
    ("lp_services.cli.db", "db"),
    ("lp_services.cli.job", "job"),
    ("lp_services.cli.report", "report"),
    ("lp_services.cli.show", "show"),
    ("lp_services.cli.builder", "builder"),
    ("lp_services.cli.chroot", "chroot"),
    ("lp_services.cli.build", "build"),
    ("lp_services.cli.recipe", "recipe"),
    ("lp_services.cli.demo", "demo"),
    ("lp_services.cli.token", "token"),
    ("lp_services.cli.logs", "logs"),
]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lp-services", prog_name="lp-services",
                      message="%(prog)s %(version)s")
@click.option("--database", metavar="URL", envvar="LP_DATABASE_URL",
              help="PostgreSQL URL (default: $LP_DATABASE_URL, else the "
                   "embedded server in the state directory).")
@click.option("--home", metavar="DIR", envvar="LP_HOME",
              help="State directory (default: $LP_HOME, else "
                   "$STATE_DIRECTORY under systemd, else "
                   "$XDG_STATE_HOME/lp-services, else /var/lib/lp-services "
                   "for root and ~/.local/state/lp-services for others).")
@click.option("--server", metavar="URL", envvar="LP_SERVER",
              help="A buildmaster's URL: request, show, list, cancel, "
                   "retry, rescore, logs and builder commands go through "
                   "its API (default: $LP_SERVER; without it, straight to "
                   "the database, for administrators).")
@click.option("--token-file", metavar="FILE", envvar="LP_TOKEN_FILE",
              help="A file holding the API token for --server (default: "
                   "$LP_TOKEN_FILE; without it, anonymous).")
@click.pass_context
def cli(ctx, database, home, server, token_file):
    """lp-services: one job table for a software build farm."""
    ctx.obj = CLIContext(database=database, home=home, server=server,
                         token_file=token_file)


for _module, _name in _GROUPS:
    cli.add_command(getattr(importlib.import_module(_module), _name))


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="lp-services")


if __name__ == "__main__":
    main()
