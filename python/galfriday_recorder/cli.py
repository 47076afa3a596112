"""``galfriday-recorder``: demo, replay, report, doctor, migrate, verify, services, spool."""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import psycopg
from psycopg import sql

from .config import RecorderConfig, redact
from .errors import RecorderError
from .report import SEED_MEASUREMENTS, SEED_TABLES, build_report, measurement_counts, table_counts
from .services import LocalServices, free_port

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


def _dsn(args: argparse.Namespace) -> str | None:
    """--dsn, then the configuration, then the local server (None, said, if none)."""
    dsn: str | None = args.dsn or RecorderConfig.load(args.config).pg_conninfo
    if not dsn:
        services = _services(args)
        if not services.postgres.running():
            print(
                "no --dsn, GALFRIDAY_PG_DSN or running local server; try "
                "`galfriday-recorder services up`",
                file=sys.stderr,
            )
            return None
        dsn = services.postgres.dsn()
    return dsn


def cmd_migrate(args: argparse.Namespace) -> int:
    from .migrate import migrate

    dsn = _dsn(args)
    if dsn is None:
        return 2
    schema = "" if args.dsn else RecorderConfig.load(args.config).pg_schema
    applied = migrate(dsn, schema=schema)
    print(f"{redact(dsn)}: applied {applied}" if applied else f"{redact(dsn)}: up to date")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from .ledger.verify import verify

    dsn = _dsn(args)
    if dsn is None:
        return 2
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        diffs = verify(conn)
    for diff in diffs:
        print(diff)
    print(f"{redact(dsn)}: {len(diffs)} difference(s) between trades and fills")
    return 1 if diffs else 0


def _local_config(args: argparse.Namespace, database: str, *, fresh: bool) -> RecorderConfig:
    """The configured servers, or the local ones under ``--home`` started on demand.

    ``fresh`` starts the named PostgreSQL and InfluxDB databases and the data
    directory empty, so a demo's summary counts exactly what that run wrote.
    """
    cfg = RecorderConfig.load(args.config)
    services = _services(args)
    changes: dict[str, object] = {}
    if not cfg.pg_dsn:
        services.postgres.start()
        with psycopg.connect(services.postgres.dsn(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            present = exists.fetchone() is not None
            if fresh and present:
                conn.execute(
                    sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(database))
                )
            if fresh or not present:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        changes["pg_dsn"] = services.postgres.dsn(database)
    if not cfg.influx_url:
        if shutil.which("influxd"):
            services.influxdb.start()
            if fresh:
                services.influxdb.query(f'DROP DATABASE "{database}"')
            services.influxdb.create_database(database)
            changes["influx_url"] = services.influxdb.url()
        else:
            print(
                "InfluxDB is not installed: time series go to the disk spool "
                "(apt-get install influxdb)",
                file=sys.stderr,
            )
            changes["influx_url"] = f"http://127.0.0.1:{free_port()}"
        changes["influx_database"] = database
    data_dir = Path(args.home) / "data" / database
    if fresh:
        shutil.rmtree(data_dir, ignore_errors=True)
    changes["data_dir"] = data_dir
    return cfg.replace(**changes)


def _percentiles(samples: list[int]) -> str:
    if not samples:
        return "n/a"
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(int(q * len(ordered)), len(ordered) - 1)] / 1000

    return f"p50 {at(0.5):.2f} us, p99 {at(0.99):.2f} us, max {ordered[-1] / 1000:.1f} us"


def _summary(
    cfg: RecorderConfig, args: argparse.Namespace
) -> tuple[dict[str, int], dict[str, int]]:
    tables = table_counts(cfg.pg_conninfo)
    services = _services(args)
    points = (
        measurement_counts(services.influxdb.query, cfg.influx_database)
        if services.influxdb.running() and cfg.influx_url == services.influxdb.url()
        else {}
    )
    print("\nPostgreSQL rows                 InfluxDB points")
    for i, table in enumerate(SEED_TABLES):
        measurement = SEED_MEASUREMENTS[i] if i < len(SEED_MEASUREMENTS) else ""
        right = f"{measurement:<20} {points[measurement]:>10,}" if points and measurement else ""
        print(f"  {table:<20} {tables[table]:>8,}    {right}".rstrip())
    if not points:
        print("  (InfluxDB not reachable here: see `galfriday-recorder spool status`)")
    return tables, points


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_session
    from .recorder import Recorder

    pairs = [p.strip() for p in args.pairs.split(",") if p.strip()]
    cfg = _local_config(args, "galfriday_demo", fresh=True).replace(metrics_interval_s=1.0)
    print(f"demo: {args.minutes:g} simulated minutes of {', '.join(pairs)} at {args.speed} speed")
    print(
        f"  PostgreSQL {redact(cfg.pg_dsn)}\n  InfluxDB   {cfg.influx_url} db={cfg.influx_database}"
    )
    with Recorder(cfg) as rec:
        result = run_session(rec, pairs, args.minutes, realtime=args.speed == "realtime")
        report = rec.flush(60)
        stats = rec.stats()
    tables, _ = _summary(cfg, args)
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
    return 0 if report and tables["trades"] > 0 and not stats["bridge_refused"] else 1


def cmd_replay(args: argparse.Namespace) -> int:
    from .recorder import Recorder
    from .replay import replay_file

    cfg = _local_config(args, args.database, fresh=False)
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
    _summary(cfg, args)
    return 1 if (args.strict and result.errors) or not report else 0


def cmd_report(args: argparse.Namespace) -> int:
    cfg = _local_config(args, args.database, fresh=False)
    since = datetime.fromisoformat(args.since) if args.since else None
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=timezone.utc)
    report = build_report(cfg.pg_conninfo, since)
    print(report.render())
    if args.png:
        from .report import draw_png

        pair = report.rows[0].trading_pair if report.rows else None
        mids = _mids(args, cfg, pair) if pair else None
        draw_png(cfg.pg_conninfo, Path(args.png), mids, pair)
        print(f"wrote {args.png}")
    return 0


def _mids(
    args: argparse.Namespace, cfg: RecorderConfig, pair: str
) -> list[tuple[datetime, float]] | None:
    influx = _services(args).influxdb
    if not influx.running():
        return None
    answer = influx.query(
        "SELECT mean(mid_price) FROM market_data_l2 WHERE trading_pair = "
        f"'{pair.replace(chr(39), '')}' AND time > 0 GROUP BY time(10s) fill(none)",
        db=cfg.influx_database,
    )
    series = answer.get("results", [{}])[0].get("series", [])
    values = series[0]["values"] if series else []
    return [(datetime.fromtimestamp(ts / 1e9, tz=timezone.utc), float(v)) for ts, v in values]


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import diagnose

    cfg = _local_config(args, args.database, fresh=False)
    problems = 0
    for check in diagnose(cfg):
        mark = "ok  " if check.ok else "FAIL"
        problems += not check.ok
        print(f"[{mark}] {check.name}: {check.detail}")
        if not check.ok and check.fix:
            print(f"       fix: {check.fix}")
    return 1 if problems else 0


def cmd_spool(args: argparse.Namespace) -> int:
    from .series import spool_replay
    from .spool import spool_status

    cfg = _local_config(args, args.database, fresh=False)
    result = spool_status(cfg) if args.action == "status" else spool_replay(cfg, args.timeout)
    for key, value in result.items():
        print(f"{key:<16} {value}")
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

    def add_dsn(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--dsn", default=None, help="PostgreSQL DSN (default: config, then local server)"
        )

    p = sub.add_parser("migrate", help="apply pending schema migrations")
    add_dsn(p)
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser(
        "verify", help="recompute every trade from the stored fills; exit 1 on a difference"
    )
    add_dsn(p)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("demo", help="a synthetic Kraken session through the whole recorder")
    p.add_argument("--minutes", type=float, default=5.0, help="simulated minutes (default 5)")
    p.add_argument("--pairs", default="XRP/USD,DOGE/USD")
    p.add_argument("--speed", choices=("max", "realtime"), default="max")
    p.set_defaults(func=cmd_demo)

    def add_database(p: argparse.ArgumentParser) -> None:
        p.add_argument("--database", default="galfriday", help="database on the local servers")

    p = sub.add_parser("replay", help="feed a JSON Lines capture of WebSocket frames")
    p.add_argument("file")
    p.add_argument("--speed", choices=("max", "realtime"), default="max")
    p.add_argument("--strict", action="store_true", help="stop at the first bad line")
    add_database(p)
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("report", help="P&L by strategy and pair, win rate, fees, drawdown")
    p.add_argument("--since", default=None, help="ISO date or time (UTC when naive)")
    p.add_argument("--png", default=None, help="draw the equity curve and trades to this file")
    add_database(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("doctor", help="check servers, schema, journal and spool")
    add_database(p)
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("spool", help="show or drain the InfluxDB disk spool")
    p.add_argument("action", choices=("status", "replay"))
    p.add_argument("--timeout", type=float, default=60.0)
    add_database(p)
    p.set_defaults(func=cmd_spool)
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
