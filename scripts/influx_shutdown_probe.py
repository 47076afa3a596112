"""Does InfluxDB keep writes whose answer a shutdown cut off? (Why ``lines_in_doubt`` exists.)

Three threads post 4,000-point batches to a scratch ``influxd`` over keep-alive
connections; the server gets SIGTERM mid-stream and is started again. Every batch
that was not answered 204 but is stored in full is printed: each one is a write
the client had to count as failed although the server kept it.

    .venv/bin/python scripts/influx_shutdown_probe.py
"""

from __future__ import annotations

import gzip
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import urllib3

from galfriday_recorder.lab.services import InfluxService

BATCH = 4000


def main() -> None:
    service = InfluxService(Path(tempfile.mkdtemp(prefix="influx-probe-")))
    service.start()
    url = service.url()
    http = urllib3.PoolManager(maxsize=3, retries=False, timeout=urllib3.Timeout(2, read=2))
    http.request("POST", f"{url}/query", fields={"q": "CREATE DATABASE probe"})
    answers: dict[int, str] = {}
    next_batch = iter(range(10**9))
    lock = threading.Lock()
    stop = threading.Event()

    def post() -> None:
        while not stop.is_set():
            with lock:
                n = next(next_batch)
            body = "".join(
                f"m,batch={n} v={i}i {1_700_000_000_000_000_000 + n * 10_000 + i}\n"
                for i in range(BATCH)
            )
            try:
                resp = http.request(
                    "POST",
                    f"{url}/write?db=probe&precision=ns",
                    body=gzip.compress(body.encode(), 1),
                    headers={"Content-Encoding": "gzip"},
                )
                answers[n] = str(resp.status)
            except urllib3.exceptions.HTTPError as exc:
                answers[n] = type(exc).__name__
                time.sleep(0.05)

    threads = [threading.Thread(target=post) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(3)
    service.stop()
    time.sleep(3)
    stop.set()
    for t in threads:
        t.join()
    service.start()
    try:
        result = service.query("SELECT count(v) FROM m GROUP BY batch", db="probe")
        stored = {
            int(s["tags"]["batch"]): s["values"][0][1]
            for s in result["results"][0].get("series", [])
        }
    finally:
        service.stop()
    print("answers:", dict(Counter(answers.values())))
    kept = [n for n, answer in sorted(answers.items()) if answer != "204" and stored.get(n)]
    for n in kept:
        print(f"batch {n}: answered {answers[n]}, stored {stored[n]} of {BATCH} points")
    lost = [n for n, answer in answers.items() if answer == "204" and stored.get(n) != BATCH]
    print(f"{len(kept)} failed writes kept by the server; {len(lost)} acknowledged writes lost")


if __name__ == "__main__":
    main()
