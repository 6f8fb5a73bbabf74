"""``lp-services token``: API tokens (create, list, revoke). Direct
database mode, for administrators."""

import click

from lp_services.cli.context import (
    echo_json, pass_context, user_errors, utc_now)

__all__ = ["token"]


def _run(ctx, function, *args, **kwargs):
    from lp_services.auth.tokens import TokenError

    return ctx.run_with_cursor(function, *args, errors=(TokenError,), **kwargs)


def _expiry(value: str | None):
    """``30d``, ``12h``, ``90m`` from now, or an ISO date/time."""
    if value is None:
        return None
    import re
    from datetime import datetime, timedelta, timezone

    match = re.fullmatch(r"(\d+)([dhm])", value)
    if match:
        unit = {"d": "days", "h": "hours", "m": "minutes"}[match.group(2)]
        return utc_now() + timedelta(**{unit: int(match.group(1))})
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("use 30d, 12h, 90m or an ISO date: %r"
                                 % value) from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


@click.group()
def token():
    """API tokens: create (shown once), list, revoke."""


@token.command()
@click.argument("name")
@click.option("--role", type=click.Choice(["submitter", "operator", "admin"]),
              required=True)
@click.option("--expires", metavar="WHEN",
              help="30d, 12h, 90m from now, or an ISO date (default: never).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
@user_errors
def create(ctx, name, role, expires, as_json):
    """Create token NAME and print it. It is shown this once: the
    database keeps only its SHA-256."""
    from lp_services.auth.tokens import create_token

    when = _expiry(expires)
    secret = _run(ctx, create_token, name, role, utc_now(), when)
    if as_json:
        echo_json({"name": name, "role": role, "token": secret,
                   "expires": when.isoformat() if when else None})
    else:
        click.echo(secret)


@token.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
@user_errors
def list_(ctx, as_json):
    """List tokens (never their secret)."""
    from lp_services.auth.tokens import list_tokens

    rows = _run(ctx, list_tokens)
    if as_json:
        echo_json(rows)
        return
    from lp_services.cli.tables import output_console, render_table
    from lp_services.ops.reports import humanize

    console = output_console()
    console.print(render_table(
        "tokens", ["name", "role", "created", "expires", "revoked",
                   "last used"],
        [[r["name"], r["role"], humanize(r["date_created"]),
          humanize(r["expires"]), humanize(r["revoked"]),
          humanize(r["last_used"])] for r in rows], console.width,
        optional=["last used", "created"]))


@token.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
@user_errors
def revoke(ctx, name, as_json):
    """Revoke token NAME at once."""
    from lp_services.auth.tokens import revoke_token

    _run(ctx, revoke_token, name, utc_now())
    if as_json:
        echo_json({"name": name, "revoked": True})
    else:
        click.echo("revoked %s" % name)
