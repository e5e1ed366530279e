"""Dashboard benchmark: a real server (gunicorn, as `joinedup dashboard serve` runs it) on a
100,000-child analysts' snapshot, 20 concurrent signed-in analysts; median and p95 latency of the
list, the filtered list and the child page.

Issue target: p95 <= 200 ms for each page on these machines (2 cores).

The snapshot: `--home HOME` uses a home's published read models as they are.  Otherwise a
100,000-child snapshot is made from a real published county (`--source HOME`, default: a
20,000-child `joinedup demo` run into a temporary home first, untimed) by copying it
`--copies` times (default 5) with fresh child ids and ranks re-computed over all children:
real distributions of events, scores and reasons at five times the size.  The engineers' and
planners' snapshots are copied as they are.

Each virtual user signs in through the real pages (password, then TOTP), then loops: a page of
the ranked list (random page of the first 20), a filtered list (random ward, age band and
band), and a child page (random child of that list).  Every request is a full round trip with
the session, CSRF, second factor, audit entry and security headers as in production.  The
client runs in this process with one thread per user, so it shares the 2 CPUs with the server.

    .venv/bin/python bench/bench_dashboard.py --source /tmp/jh20 [--users 20 --seconds 60]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_snapshot(source: Path, home: Path, copies: int, capacity: int) -> dict:
    """Copy `source`'s published snapshots into `home`, the analysts' one `copies` times over."""
    import duckdb

    src_w, dst_w = source / "warehouse", home / "warehouse"
    dst_w.mkdir(parents=True, exist_ok=True)
    for a in ("planners", "engineers"):
        shutil.copyfile(src_w / f"published_{a}.duckdb", dst_w / f"published_{a}.duckdb")
    out = dst_w / "published_analysts.duckdb"
    out.unlink(missing_ok=True)
    con = duckdb.connect(str(out))
    con.execute(f"ATTACH '{src_w / 'published_analysts.duckdb'}' AS src (READ_ONLY)")
    copies_sql = f"range(0, {copies}) k(k)"

    def new_id(col: str) -> str:
        # C + copy digit + the rest: unique across copies, the same shape as a real id
        return f"'C' || k::VARCHAR || substr({col}, 2)"

    con.execute(
        f"CREATE TABLE children AS SELECT * REPLACE ({new_id('child_id')} AS child_id) "
        f"FROM src.children, {copies_sql}"
    )
    con.execute(
        f"CREATE TABLE timeline AS SELECT * REPLACE ({new_id('child_id')} AS child_id) "
        f"FROM src.timeline, {copies_sql} ORDER BY child_id, event_month"
    )
    con.execute(
        f"""CREATE TABLE scores AS
        WITH s AS (SELECT * REPLACE ({new_id("child_id")} AS child_id) FROM src.scores, {copies_sql}),
        r AS (SELECT * REPLACE (row_number() OVER (ORDER BY score DESC, child_id)::INTEGER AS rank) FROM s)
        SELECT * REPLACE (CASE WHEN rank <= {capacity} THEN 'within_capacity'
                               WHEN rank <= {2 * capacity} THEN 'next_capacity'
                               ELSE 'below_capacity' END AS band) FROM r ORDER BY rank"""
    )
    con.execute("CREATE TABLE models AS SELECT * FROM src.models")
    tables = ["children", "timeline", "scores", "models"]
    has_links = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = 'src' AND table_name = 'link_review'"
    ).fetchone()[0]
    if has_links:
        con.execute("CREATE TABLE link_review AS SELECT * FROM src.link_review")
        tables.append("link_review")
    con.execute(
        "CREATE TABLE manifest AS SELECT table_name, 0::BIGINT AS n_rows, audience, publish_id, "
        "published_at, schema_version FROM src.manifest WHERE table_name IN ("
        + ", ".join(f"'{t}'" for t in tables)
        + ")"
    )
    counts = {}
    for t in tables:
        n = con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
        con.execute("UPDATE manifest SET n_rows = ? WHERE table_name = ?", [n, t])
        counts[t] = n
    con.close()
    return counts


def _demo(home: Path, children: int) -> None:
    subprocess.run(
        [str(BIN / "joinedup"), "--home", str(home), "demo", "--children", str(children),
         "--no-airflow", "--no-serve"],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip


def make_users(home: Path, n: int) -> list[tuple[str, str, bytes]]:
    """n analysts with passwords and confirmed TOTP devices: (name, password, key)."""
    from dashboard import cli

    cli.setup_django(home)
    users = []
    for i in range(n):
        acc = cli.adduser(f"bench-analyst-{i:02d}", "analyst")
        users.append(
            (acc["username"], acc["password"], cli.enrol_authenticator(acc["username"], "bench"))
        )
    return users


def sign_in(base: str, username: str, password: str, key: bytes):
    import requests
    from django_otp.oath import totp

    s = requests.Session()
    page = s.get(f"{base}/accounts/login/", timeout=30)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    r = s.post(
        f"{base}/accounts/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": token},
        headers={"Referer": f"{base}/accounts/login/"}, timeout=30,
    )  # fmt: skip
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', r.text).group(1)
    r = s.post(
        f"{base}/accounts/mfa/",
        data={"token": f"{totp(key):06d}", "csrfmiddlewaretoken": token},
        headers={"Referer": f"{base}/accounts/mfa/"}, timeout=30,
    )  # fmt: skip
    if not r.url.rstrip("/").endswith("/children"):
        raise RuntimeError(f"sign-in of {username} failed (ended at {r.url})")
    return s


def run_load(
    base: str, sessions: list, seconds: float, wards: list[str], seed: int, think: float
) -> dict:
    import requests

    timings: dict[str, list[float]] = {"list": [], "filtered": [], "child": []}
    errors: list[str] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    ids_re = re.compile(r'href="/children/(C[0-9A-Za-z]+)/"')

    first_ids = ids_re.findall(sessions[0].get(f"{base}/children/", timeout=60).text)

    def user(i: int, s) -> None:
        rng = random.Random(seed * 1000 + i)
        ids = first_ids
        while time.monotonic() < stop:
            for kind in ("list", "filtered", "child"):
                if kind == "list":
                    url = f"{base}/children/?page={rng.randint(1, 20)}"
                elif kind == "filtered":
                    q = {
                        "ward": rng.choice(wards),
                        "age_band": rng.choice(["0-4", "5-9", "10-15", "16-17"]),
                    }
                    if rng.random() < 0.5:
                        q["band"] = rng.choice(
                            ["within_capacity", "next_capacity", "below_capacity"]
                        )
                    url = f"{base}/children/?" + "&".join(f"{k}={v}" for k, v in q.items())
                else:
                    url = f"{base}/children/{rng.choice(ids)}/"
                t = time.perf_counter()
                try:
                    r = s.get(url, timeout=60)
                except requests.RequestException as exc:  # counted, and the user goes on
                    with lock:
                        errors.append(f"{kind} {type(exc).__name__}")
                    continue
                ms = (time.perf_counter() - t) * 1000
                if r.status_code != 200:
                    with lock:
                        errors.append(f"{kind} {r.status_code}")
                    continue
                with lock:
                    timings[kind].append(ms)
                if kind != "child":
                    ids = ids_re.findall(r.text) or ids  # a child of the page just seen
                if think > 0:
                    time.sleep(rng.expovariate(1 / think))

    threads = [threading.Thread(target=user, args=(i, s)) for i, s in enumerate(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    def stats(xs: list[float]) -> dict:
        xs = sorted(xs)
        return {
            "requests": len(xs),
            "median_ms": round(statistics.median(xs), 1) if xs else None,
            "p95_ms": round(xs[int(0.95 * (len(xs) - 1))], 1) if xs else None,
            "max_ms": round(xs[-1], 1) if xs else None,
        }

    out = {k: stats(v) for k, v in timings.items()}
    out["errors"] = len(errors)
    out["error_kinds"] = sorted(set(errors))
    out["requests_per_second"] = round(sum(len(v) for v in timings.values()) / seconds, 1)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, help="use this home's published snapshots as they are")
    ap.add_argument("--source", type=Path, help="a demo home whose snapshot is copied to 100k")
    ap.add_argument("--copies", type=int, default=5)
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--think",
        type=float,
        default=1.0,
        help="mean seconds a user reads a page before the next request (exponential); 0 = flat out",
    )
    ap.add_argument("--database-url", default="", help="PostgreSQL app database (default SQLite)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="joinedup-bench-dashboard-"))
    figures: dict = {"users": args.users, "seconds": args.seconds, "workers": args.workers,
                     "threads": args.threads, "think_seconds": args.think,
                     "cpus": os.cpu_count()}  # fmt: skip
    if args.home:
        home = args.home
    else:
        source = args.source
        if source is None:
            source = work / "source"
            t = time.perf_counter()
            _demo(source, 20000)
            figures["source_demo_seconds"] = round(time.perf_counter() - t, 1)
        home = work / "home"
        from joinedup.config import Settings

        cap = Settings.from_env(source).capacity_per_month
        figures["snapshot"] = build_snapshot(source, home, args.copies, cap)
    os.environ["JOINEDUP_HOME"] = str(home)
    if args.database_url:
        os.environ["JOINEDUP_DASHBOARD_DATABASE_URL"] = args.database_url
    figures["app_database"] = "postgresql" if args.database_url else "sqlite"
    users = make_users(home, args.users)
    import duckdb

    con = duckdb.connect(str(home / "warehouse" / "published_analysts.duckdb"), read_only=True)
    wards = [
        r[0]
        for r in con.execute(
            "SELECT DISTINCT ward_code FROM children WHERE ward_code IS NOT NULL ORDER BY 1"
        ).fetchall()
    ]
    figures["children"] = con.execute("SELECT count(*) FROM children").fetchone()[0]
    figures["scored"] = con.execute("SELECT count(*) FROM scores").fetchone()[0]
    con.close()

    port = _free_port()
    env = {**os.environ, "JOINEDUP_HOME": str(home)}
    server = subprocess.Popen(
        [str(BIN / "joinedup"), "--home", str(home), "dashboard", "serve", "--port", str(port),
         "--workers", str(args.workers), "--threads", str(args.threads)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        import requests

        for _ in range(200):
            try:
                if requests.get(f"{base}/health", timeout=60).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        else:
            raise RuntimeError("the server did not start")
        sessions = [sign_in(base, *u) for u in users]
        # warm-up: every worker opens the snapshot once
        for s in sessions[:4]:
            s.get(f"{base}/children/", timeout=60)
        figures["load"] = run_load(base, sessions, args.seconds, wards, args.seed, args.think)
        import psutil

        procs = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
        figures["server_rss_mib"] = round(sum(p.memory_info().rss for p in procs) / 2**20)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(work, ignore_errors=True)
    load = figures["load"]
    figures["target_p95_ms"] = 200
    figures["met"] = all(
        load[k]["p95_ms"] is not None and load[k]["p95_ms"] <= 200
        for k in ("list", "filtered", "child")
    )
    if args.json:
        print(json.dumps(figures))
    else:
        print(
            f"dashboard benchmark: {figures['children']:,} children ({figures['scored']:,} scored), "
            f"{args.users} users for {args.seconds:.0f} s (mean think {args.think} s), gunicorn {args.workers}x{args.threads} "
            f"threads, app database {figures['app_database']}, {figures['cpus']} CPUs"
        )
        for k in ("list", "filtered", "child"):
            s = load[k]
            print(
                f"  {k:9s} requests {s['requests']:6d}  median {s['median_ms']:7.1f} ms  p95 {s['p95_ms']:7.1f} ms  max {s['max_ms']:7.1f} ms"
            )
        if load["errors"]:
            print(f"  error kinds: {', '.join(load['error_kinds'])}")
        print(
            f"  server memory (gunicorn arbiter and workers, RSS): {figures['server_rss_mib']} MiB"
        )
        print(
            f"  errors {load['errors']}, throughput {load['requests_per_second']} requests/s; "
            f"target p95 <= 200 ms: {'met' if figures['met'] else 'NOT met'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
