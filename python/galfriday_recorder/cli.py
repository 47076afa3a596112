"""``galfriday-recorder``: demo, replay, report, doctor, migrate, verify, retention, services,
spool.

The lab (local servers, simulator) is imported only by the commands that use it."""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from .config import RecorderConfig
from .errors import ConfigError, RecorderError
from .influxql import InfluxQL, InfluxQueryError, quote_ident
from .redaction import redact
from .report import SEED_MEASUREMENTS, SEED_TABLES, build_report, measurement_counts, table_counts

if TYPE_CHECKING:
    from .lab.services import LocalServices

DEFAULT_HOME = Path(".galfriday")
_DEFAULT_DATA_DIR = RecorderConfig.__dataclass_fields__["data_dir"].default

WHERE = """\
Every command takes --pg-dsn, --influx-url and --database, or reads GALFRIDAY_PG_DSN,
GALFRIDAY_INFLUX_URL and GALFRIDAY_INFLUX_DATABASE (every RecorderConfig field has its
GALFRIDAY_<FIELD>; GALFRIDAY_INFLUX_API=v2 for InfluxDB 2.x/3.x). The journal and the
spool are under GALFRIDAY_DATA_DIR (default --home/data/DATABASE); GALFRIDAY_CONFIG or
--config names a TOML file. Options beat variables, which beat the file.
Without a PostgreSQL or InfluxDB given, the local servers under --home are used:
`demo` and `replay` start them, the other commands use them only while they run
(`galfriday-recorder services up|down|status`)."""


def _services(args: argparse.Namespace) -> LocalServices:
    from .lab.services import LocalServices

    return LocalServices.under(Path(args.home) / "services")


def _settings(args: argparse.Namespace) -> RecorderConfig:
    """The configuration the options, variables and file give, before any local server."""
    given = {
        "pg_dsn": args.pg_dsn,
        "influx_url": args.influx_url,
        "influx_database": args.database,
    }
    cfg = RecorderConfig.load(args.config, **{k: v for k, v in given.items() if v})
    if cfg.data_dir == _DEFAULT_DATA_DIR:
        cfg = cfg.replace(data_dir=Path(args.home) / "data" / cfg.influx_database)
    return cfg


def _config(
    args: argparse.Namespace, *, start: bool = False, fresh: bool = False
) -> RecorderConfig:
    """The configured servers, else the local ones under ``--home``.

    Only ``start`` starts local servers (and creates the database on them); ``fresh``
    also empties the database and the data directory first, so a demo's summary counts
    exactly what that run wrote. Without ``start`` a local server is used only while it
    runs, and a field stays empty when there is none.
    """
    cfg = _settings(args)
    database = cfg.influx_database
    changes: dict[str, object] = {}
    if not cfg.pg_dsn:
        postgres = _services(args).postgres
        if start:
            postgres.start()
            _local_database(postgres.dsn(), database, fresh=fresh)
        if postgres.running():
            changes["pg_dsn"] = postgres.dsn(database)
    if not cfg.influx_url:
        influx = _services(args).influxdb
        if start and shutil.which("influxd"):
            influx.start()
            if fresh:
                influx.query(f"DROP DATABASE {quote_ident(database)}")
            influx.query(f"CREATE DATABASE {quote_ident(database)}")
        elif start:
            from .lab.services import free_port

            print(
                "InfluxDB is not installed: time series go to the disk spool "
                "(apt-get install influxdb)",
                file=sys.stderr,
            )
            changes["influx_url"] = f"http://127.0.0.1:{free_port()}"
        if influx.running():
            changes["influx_url"] = influx.url()
    if fresh and not cfg.pg_dsn and cfg.data_dir == Path(args.home) / "data" / database:
        shutil.rmtree(cfg.data_dir, ignore_errors=True)  # its journal was for the dropped database
    return cfg.replace(**changes)


def _local_database(admin_dsn: str, database: str, *, fresh: bool) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
        present = exists.fetchone() is not None
        if fresh and present:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(database)))
        if fresh or not present:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))


def _need_postgres(cfg: RecorderConfig) -> None:
    if not cfg.pg_dsn:
        raise ConfigError(
            "no PostgreSQL: give --pg-dsn or GALFRIDAY_PG_DSN, or start the local one "
            "(`galfriday-recorder services up`)"
        )


def _running(args: argparse.Namespace) -> set[str]:
    """The local servers under ``--home`` running now (no server binary is touched otherwise)."""
    return {s.name for s in _services(args).all() if s.running()}


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

    cfg = _config(args)
    _need_postgres(cfg)
    applied = migrate(cfg.pg_conninfo, schema=cfg.pg_schema)
    shown = redact(cfg.pg_dsn)
    print(f"{shown}: applied {applied}" if applied else f"{shown}: up to date")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from .ledger.verify import verify

    cfg = _config(args)
    _need_postgres(cfg)
    with psycopg.connect(cfg.pg_conninfo, autocommit=True, connect_timeout=10) as conn:
        diffs = verify(conn)
    for diff in diffs:
        print(diff)
    print(f"{redact(cfg.pg_dsn)}: {len(diffs)} difference(s) between trades and fills")
    return 1 if diffs else 0


def _percentiles(samples: list[int]) -> str:
    if not samples:
        return "n/a"
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(int(q * len(ordered)), len(ordered) - 1)] / 1000

    return f"p50 {at(0.5):.2f} us, p99 {at(0.99):.2f} us, max {ordered[-1] / 1000:.1f} us"


def _summary(cfg: RecorderConfig) -> tuple[dict[str, int], dict[str, int]]:
    tables = table_counts(cfg.pg_conninfo)
    points: dict[str, int] = {}
    problem = "no InfluxDB configured"
    if cfg.influx_url:
        reader = InfluxQL(cfg)
        try:
            points = measurement_counts(reader.raw, cfg.influx_database)
        except InfluxQueryError as exc:
            problem = str(exc)
        finally:
            reader.close()
    print("\nPostgreSQL rows                 InfluxDB points")
    for i, table in enumerate(SEED_TABLES):
        measurement = SEED_MEASUREMENTS[i] if i < len(SEED_MEASUREMENTS) else ""
        right = f"{measurement:<20} {points[measurement]:>10,}" if points and measurement else ""
        print(f"  {table:<20} {tables[table]:>8,}    {right}".rstrip())
    if not points:
        print(f"  (InfluxDB not counted: {problem}; see `galfriday-recorder spool status`)")
    return tables, points


def _left_running(args: argparse.Namespace, before: set[str]) -> None:
    started = sorted(_running(args) - before)
    if started:
        print(
            f"\nleft running for `report` and `doctor`: {', '.join(started)}; "
            f"`galfriday-recorder --home {args.home} services down` stops them"
        )


def cmd_demo(args: argparse.Namespace) -> int:
    from .lab.demo import run_session
    from .recorder import Recorder

    pairs = [p.strip() for p in args.pairs.split(",") if p.strip()]
    before = _running(args)
    cfg = _config(args, start=True, fresh=True).replace(metrics_interval_s=1.0)
    print(f"demo: {args.minutes:g} simulated minutes of {', '.join(pairs)} at {args.speed} speed")
    print(
        f"  PostgreSQL {redact(cfg.pg_dsn)}\n  InfluxDB   {redact(cfg.influx_url)} "
        f"db={cfg.influx_database}\n  data       {cfg.data_dir}"
    )
    with Recorder(cfg) as rec:
        result = run_session(rec, pairs, args.minutes, realtime=args.speed == "realtime")
        report = rec.flush(60)
        stats = rec.stats()
    tables, _ = _summary(cfg)
    c = result.counts
    print(
        f"\nstrategy: {c.signals} signals ({c.rejected} rejected), {c.orders} orders, "
        f"{c.fills} fills, exits {dict(sorted(c.exits.items()))}"
    )
    print(build_report(cfg.pg_conninfo).render())
    print(
        f"\nhot path, Rust ingest per frame: p50 {stats['market_ingest_ns_p50'] / 1000:.2f} us, "
        f"p99 {stats['market_ingest_ns_p99'] / 1000:.2f} us"
    )
    print(f"on_market_frame as the bot sees it: {_percentiles(result.call_ns)}")
    print(
        f"throughput: {result.frames / result.wall_s:,.0f} frames/s and "
        f"{c.ledger_events / result.wall_s:,.0f} ledger events/s over {result.wall_s:.1f} s "
        f"(synthetic market generation included)"
    )
    print(
        f"through the bot bridge: {stats['bridge_refused']} events refused, "
        f"{stats.get('orders_report_fills', 0)} fills from cumulative reports, "
        f"{stats.get('orders_trade_fills_covered', 0)} per-trade fills already covered"
    )
    print(
        f"flushed: ledger committed={report.ledger_committed}, "
        f"series written={report.series_written}"
    )
    _left_running(args, before)
    return 0 if report and tables["trades"] > 0 and not stats["bridge_refused"] else 1


def cmd_replay(args: argparse.Namespace) -> int:
    from .recorder import Recorder
    from .replay import replay_file

    before = _running(args)
    cfg = _config(args, start=True)
    with Recorder(cfg) as rec:
        result = replay_file(
            rec,
            Path(args.file),
            strict=args.strict,
            realtime=args.speed == "realtime",
            progress=True,
        )
        report = rec.flush(60)
    print(result.render())
    _summary(cfg)
    _left_running(args, before)
    return 1 if (args.strict and result.errors) or not report else 0


def cmd_report(args: argparse.Namespace) -> int:
    cfg = _config(args)
    _need_postgres(cfg)
    since = datetime.fromisoformat(args.since) if args.since else None
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=timezone.utc)
    report = build_report(cfg.pg_conninfo, since)
    print(report.render())
    if args.png:
        from .report import draw_png

        for note in draw_png(cfg, Path(args.png), since):
            print(note, file=sys.stderr)
        print(f"wrote {args.png}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import diagnose

    cfg = _config(args)
    problems = 0
    for check in diagnose(cfg):
        mark = "ok  " if check.ok else "FAIL"
        problems += not check.ok
        print(f"[{mark}] {check.name}: {check.detail}")
        if not check.ok and check.fix:
            print(f"       fix: {check.fix}")
    return 1 if problems else 0


def cmd_spool(args: argparse.Namespace) -> int:
    from .retention import writer_configs
    from .series import spool_replay
    from .spool import spool_status

    if args.action == "status":
        results = [spool_status(c) for c in writer_configs(_settings(args))]
    else:
        cfg = _config(args)
        if not cfg.influx_url:
            raise ConfigError("no InfluxDB: give --influx-url or GALFRIDAY_INFLUX_URL")
        results = [spool_replay(c, args.timeout) for c in writer_configs(cfg)]
    for i, result in enumerate(results):
        if i:
            print("raw L2 (influx_l2_rp):")
        for key, value in result.items():
            print(f"{key:<16} {value}")
    return 0


def cmd_retention(args: argparse.Namespace) -> int:
    from .retention import V2_ADVICE, delete_old_logs, influx_apply, influx_status, logs_status

    cfg = _config(args)
    apply = args.action == "apply"
    if not cfg.influx_url:
        print("influxdb: none configured")
    elif cfg.influx_api != "v1":
        print(f"influxdb: {V2_ADVICE}")
    else:
        reader = InfluxQL(cfg)
        try:
            if apply:
                for statement in influx_apply(reader, backfill=args.backfill):
                    print(f"influxdb: {statement}")
            status = influx_status(reader)
        finally:
            reader.close()
        for name, duration in sorted(status.policies.items()):
            print(f"influxdb: retention policy {name!r} keeps {duration}")
        for name in sorted(status.continuous_queries):
            print(f"influxdb: continuous query {name!r}")
        if not cfg.influx_l2_rp:
            print(
                "influxdb: raw market_data_l2 goes to the default policy until the recorder "
                "runs with GALFRIDAY_INFLUX_L2_RP=l2_raw"
            )
    if not cfg.pg_dsn:
        print("postgresql: none configured")
        return 0
    days = cfg.retention_system_logs_days
    if apply:
        print(f"postgresql: deleted {delete_old_logs(cfg.pg_conninfo, days):,} system_logs rows")
    logs = logs_status(cfg.pg_conninfo, days)
    print(
        f"postgresql: {logs['system_logs']:,} system_logs rows, "
        f"{logs['older_than_max_age']:,} older than {days:g} days, oldest {logs['oldest']}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    home_help = "project-local directory of the local servers and data (default ./.galfriday)"
    parser = argparse.ArgumentParser(
        prog="galfriday-recorder",
        description=__doc__,
        epilog=WHERE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--home", default=str(DEFAULT_HOME), help=home_help)
    parser.add_argument("--config", default=None, help="TOML configuration file")
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_argument_group("where the data is")
    where.add_argument("--home", default=argparse.SUPPRESS, help=home_help)
    where.add_argument("--config", default=argparse.SUPPRESS, help="TOML configuration file")
    where.add_argument("--pg-dsn", default=None, help="PostgreSQL DSN (GALFRIDAY_PG_DSN)")
    where.add_argument("--influx-url", default=None, help="InfluxDB URL (GALFRIDAY_INFLUX_URL)")
    where.add_argument(
        "--database",
        default=None,
        help="InfluxDB database and local PostgreSQL database (GALFRIDAY_INFLUX_DATABASE; "
        "default galfriday)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=text,
            description=text,
            parents=[common],
            epilog=WHERE,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    p = command("services", "start, stop or show the local servers")
    p.add_argument("action", choices=("up", "down", "status"))
    p.add_argument("--only", choices=("postgres", "influxdb", "victoria-metrics"))
    p.set_defaults(func=cmd_services)

    p = command("migrate", "apply pending schema migrations")
    p.add_argument("--dsn", dest="pg_dsn", default=None, help="the same as --pg-dsn")
    p.set_defaults(func=cmd_migrate)

    p = command("verify", "recompute every trade from the stored fills; exit 1 on a difference")
    p.set_defaults(func=cmd_verify)

    p = command(
        "demo",
        "a synthetic Kraken session through the whole recorder (on the local servers it "
        "empties the database it records into first)",
    )
    p.add_argument("--minutes", type=float, default=5.0, help="simulated minutes (default 5)")
    p.add_argument("--pairs", default="XRP/USD,DOGE/USD")
    p.add_argument("--speed", choices=("max", "realtime"), default="max")
    p.set_defaults(func=cmd_demo)

    p = command("replay", "feed a JSON Lines capture of WebSocket frames")
    p.add_argument("file")
    p.add_argument("--speed", choices=("max", "realtime"), default="max")
    p.add_argument("--strict", action="store_true", help="stop at the first bad line")
    p.set_defaults(func=cmd_replay)

    p = command("report", "P&L by strategy and pair, win rate, fees, drawdown")
    p.add_argument("--since", default=None, help="ISO date or time (UTC when naive)")
    p.add_argument("--png", default=None, help="draw the equity curve and trades to this file")
    p.set_defaults(func=cmd_report)

    p = command("doctor", "check servers, schema, journal and spool")
    p.set_defaults(func=cmd_doctor)

    p = command("retention", "apply or show how long raw L2, its aggregates and logs are kept")
    p.add_argument("action", choices=("apply", "status"))
    p.add_argument(
        "--backfill", action="store_true", help="also aggregate the raw L2 already stored"
    )
    p.set_defaults(func=cmd_retention)

    p = command("spool", "show or drain the InfluxDB disk spool")
    p.add_argument("action", choices=("status", "replay"))
    p.add_argument("--timeout", type=float, default=60.0)
    p.set_defaults(func=cmd_spool)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RecorderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except psycopg.Error as exc:
        print(f"error: PostgreSQL: {redact(str(exc)).strip()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
