"""``galfriday-recorder``: demo, replay, report, doctor, migrate, services, spool."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .config import RecorderConfig, redact
from .errors import RecorderError
from .services import LocalServices

DEFAULT_HOME = Path(".galfriday")


def _services(args: argparse.Namespace) -> LocalServices:
    return LocalServices.under(Path(args.home) / "services")


def cmd_services(args: argparse.Namespace) -> int:
    services = _services(args)
    chosen = [s for s in services.all() if args.only in (None, s.name)]
    for service in chosen:
        if args.action == "up":
            try:
                service.start()
            except RecorderError as exc:
                print(f"{service.name}: not started: {exc}", file=sys.stderr)
                continue
        elif args.action == "down":
            service.stop()
        status = service.status()
        print(
            f"{status['service']:<17} {'running' if status['running'] else 'stopped':<8} "
            f"{status['url'] or ''}"
        )
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from .migrate import migrate

    dsn = args.dsn or RecorderConfig.load(args.config).pg_dsn
    if not dsn:
        services = _services(args)
        if not services.postgres.running():
            print(
                "no --dsn, GALFRIDAY_PG_DSN or running local server; try "
                "`galfriday-recorder services up`",
                file=sys.stderr,
            )
            return 2
        dsn = services.postgres.dsn()
    applied = migrate(dsn)
    print(f"{redact(dsn)}: applied {applied}" if applied else f"{redact(dsn)}: up to date")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="galfriday-recorder", description=__doc__)
    parser.add_argument(
        "--home",
        default=str(DEFAULT_HOME),
        help="project-local data directory (default ./.galfriday)",
    )
    parser.add_argument("--config", default=None, help="TOML configuration file")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("services", help="start, stop or show the local servers")
    p.add_argument("action", choices=("up", "down", "status"))
    p.add_argument("--only", choices=("postgres", "influxdb", "victoria-metrics"))
    p.set_defaults(func=cmd_services)

    p = sub.add_parser("migrate", help="apply pending schema migrations")
    p.add_argument(
        "--dsn", default=None, help="PostgreSQL DSN (default: config, then local server)"
    )
    p.set_defaults(func=cmd_migrate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except RecorderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
