"""The root of the ``hopline`` command tree and the error contract around it.

:func:`run` is the console-script entry point. It runs the typer app without
click's standalone handling so that every failure, whoever raises it, is shown
the same way: one line on stderr, exit 2 for bad usage or input, 1 for a
failure at run time, 130 on Ctrl-C, and a traceback only with ``--debug`` (or
``HOPLINE_DEBUG=1``).
"""

from __future__ import annotations

import os
import sys
import traceback

import typer

from hopline.cli import (
    about,
    account,
    calls,
    chat,
    client,
    daemon,
    demo,
    files,
    netcheck,
    servers,
    wire,
)
from hopline.cli import tui as tui_cli
from hopline.cli.output import CliError

app = typer.Typer(
    name="hopline",
    help="Hopline: open peer-to-peer voice and messaging.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(wire.app, name="wire")
app.add_typer(servers.loginserver_app, name="loginserver")
app.command("demo")(demo.demo_command)
app.command("register")(account.register_command)
app.command("login")(account.login_command)
app.command("logout")(account.logout_command)
app.command("supernode")(servers.supernode_command)
app.command("up")(daemon.up_command)
app.command("down")(daemon.down_command)
app.command("status")(client.status_command)
app.command("search")(client.search_command)
app.add_typer(client.profile_app, name="profile")
app.add_typer(client.presence_app, name="presence")
app.command("netcheck")(netcheck.netcheck_command)
app.command("call")(calls.call_command)
app.command("answer")(calls.answer_command)
app.command("hangup")(calls.hangup_command)
app.command("calls")(calls.calls_command)
app.add_typer(chat.contacts_app, name="contacts")
app.add_typer(chat.chat_app, name="chat")
app.command("send-file")(files.send_file_command)
app.add_typer(files.files_app, name="files")
app.command("tui")(tui_cli.tui_command)
app.command("version")(about.version_command)


@app.callback()
def main(
    debug: bool = typer.Option(False, "--debug", help="show tracebacks on errors"),
) -> None:
    """Hopline: open peer-to-peer voice and messaging."""
    if debug:
        os.environ["HOPLINE_DEBUG"] = "1"


def _debugging(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("HOPLINE_DEBUG") == "1"


def _fail(message: str, code: int) -> int:
    first_line = " ".join(message.strip().splitlines()) or "failed"
    sys.stderr.write(f"hopline: {first_line}\n")
    return code


def invoke(argv: list[str]) -> int:
    """Run the command line on ``argv``; return the exit code."""
    try:
        result = app(args=argv, prog_name="hopline", standalone_mode=False)
    except CliError as exc:
        if _debugging(argv):
            traceback.print_exc()
        return _fail(str(exc), exc.code)
    except (KeyboardInterrupt, typer.Abort):
        return _fail("interrupted", 130)
    except typer.TyperException as exc:  # click's usage errors, as typer ships them
        return _fail(_usage_message(exc), getattr(exc, "exit_code", 2) or 1)
    except Exception as exc:  # noqa: BLE001 -- the last resort: one line unless --debug
        if _debugging(argv):
            traceback.print_exc()
        return _fail(f"unexpected error: {type(exc).__name__}: {exc}", 1)
    return result if isinstance(result, int) else 0


def _usage_message(exc: Exception) -> str:
    message = str(getattr(exc, "format_message", lambda: str(exc))())
    ctx = getattr(exc, "ctx", None)
    path = getattr(ctx, "command_path", "") if ctx is not None else ""
    return f"{message} (see '{path or 'hopline'} --help')"


def run() -> None:
    """Console-script entry point."""
    sys.exit(invoke(sys.argv[1:]))
