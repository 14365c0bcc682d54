"""``shardsync web``: serve the console and the HTTP API; ``shardsync web token``: make a user's token."""

from __future__ import annotations

from typing import Optional

import click

from worker.adapters.registry import import_adapter_modules
from worker.cli.display import Exit
from worker.cli.display import complain as _err
from worker.errors import InvalidSetting, ShardsyncError
from worker.settings import get_settings


@click.group("web", invoke_without_command=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="TCP port")
@click.option("--addr", default="127.0.0.1", show_default=True, help="address to listen on (0.0.0.0: every interface)")
@click.option("--secure-cookies", is_flag=True, help="send the session cookie over HTTPS only (behind a TLS proxy)")
@click.option("--forwarded-allow-ips", default="127.0.0.1", show_default=True,
              help="proxies whose X-Forwarded-* headers are trusted")  # fmt: skip
@click.pass_context
def web(ctx: click.Context, port: int, addr: str, secure_cookies: bool, forwarded_allow_ips: str) -> Optional[int]:
    """Serve the console (pages) and the HTTP API (/api/v1) until SIGTERM or Ctrl-C.

    Users and their roles come from SHARDSYNC_WEB_USERS_FILE (or SHARDSYNC_WEB_USERS), never from the command
    line; the job adapters' modules (SHARDSYNC_ADAPTER_MODULES) must be importable here too, as for the CLI.
    """
    if ctx.invoked_subcommand is not None:
        return None
    import uvicorn  # here: the other commands do not load the web stack

    from worker.web.app import create_app

    try:
        import_adapter_modules(get_settings().adapter_modules)
        app = create_app(secure_cookies=secure_cookies)
    except InvalidSetting as err:
        _err("web", str(err))
        return Exit.BAD_INPUT
    except ShardsyncError as err:
        _err("web", str(err))
        return Exit.BAD_INPUT
    try:
        uvicorn.run(app, host=addr, port=port, proxy_headers=True, forwarded_allow_ips=forwarded_allow_ips,
                    log_level="info", server_header=False)  # fmt: skip
    except SystemExit as err:  # uvicorn exits 1 when it cannot bind
        return Exit.BAD_INPUT if err.code else Exit.OK
    return Exit.OK


@web.command("token")
@click.argument("name")
@click.option("--role", type=click.Choice(["viewer", "operator"]), default="viewer", show_default=True)
def token(name: str, role: str) -> int:
    """Make a random token for user NAME: prints the token (give it to the user) and the users-file line."""
    from worker.web.auth import new_token, parse_users, token_digest

    secret = new_token()
    line = f"{name} {role} {token_digest(secret)}"
    try:
        parse_users(line, "the new line")
    except InvalidSetting as err:
        _err("web token", str(err))
        return Exit.BAD_INPUT
    click.echo(f"token (give it to {name}; it is not kept anywhere): {secret}", err=True)
    click.echo(line)
    return Exit.OK


__all__ = ["web"]
