"""HTTP load client for the lab's mixed workload (lab_mixed.py): a community's request mix on
gevent greenlets, through nginx, with each request kind's latency recorded.

  mixed_load.py --spec FILE closed --conns 64 --secs 20 [--only KIND]
      closed loop: CONNS greenlets, each sending its next request when the last one answered,
      for SECS seconds: the rate that saturates the site (or, with --only, one kind alone).
  mixed_load.py --spec FILE open --rate R --secs 40
      open loop: requests START at exponential intervals of mean 1/R whatever the answers do
      (Poisson arrivals, at most --max-inflight outstanding: beyond that one is counted as
      dropped), over the same --conns keep-alive connections as the closed loop (a request
      waits in the client for a free one; new TLS handshakes would measure the client); each
      latency is measured from the request's scheduled start, so a stall shows in every
      request it delays (no coordinated omission). The first --warmup seconds (connections
      opened, caches filled) are sent but not recorded.

FILE (JSON, written by lab_mixed.py): url, users [[name, password, token], ...], hot and cold
post ids, and the mix {kind: weight}. Kinds: hot and cold (GET /api/posts/ID, each a view),
front (GET /api/posts, the front page), like (POST, or DELETE once liked, /api/actions), comment
(POST /api/posts/ID/comments), login (POST /api/auth/login, Argon2id), healthz (GET /healthz).
Only the lab's addresses (10.77.0.0/16); its self-signed certificate is not verified.

Prints one JSON object: per kind count, errors (non-2xx or failed), p50/p90/p99/max in ms; the
total rate; the client's own CPU seconds (a client near 1 CPU-second per second is the limit).
"""
from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import ipaddress  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import urllib.parse  # noqa: E402

import gevent  # noqa: E402
import gevent.pool  # noqa: E402
import requests  # noqa: E402
import urllib3  # noqa: E402
from requests.adapters import HTTPAdapter  # noqa: E402
from sio_load import LAB_NETWORK, percentile  # noqa: E402  (the Socket.IO client beside it)

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)


class Site:
    def __init__(self, spec: dict, pool: int, warmup: float = 0.0):
        host = urllib.parse.urlsplit(spec["url"]).hostname
        if ipaddress.ip_address(host) not in LAB_NETWORK:
            raise SystemExit(f"refusing {spec['url']}: not a lab address")
        self.url, self.users = spec["url"], spec["users"]
        self.hot, self.cold = spec["hot"], spec["cold"]
        self.kinds = list(spec["mix"])
        self.weights = [spec["mix"][k] for k in self.kinds]
        # Every kind of the mix once before the random picks: a short run still covers the
        # rare ones (1 login in 100).
        self.first = [k for k in self.kinds if spec["mix"][k] > 0]
        self.liked: set[tuple[int, int]] = set()
        self.s = requests.Session()
        self.s.verify = False
        self.s.trust_env = False  # else REQUESTS_CA_BUNDLE wins over verify; no proxy
        self.s.mount("https://", HTTPAdapter(pool_connections=1, pool_maxsize=pool, pool_block=True))
        self.lat: dict[str, list[float]] = {}
        self.errors: dict[str, int] = {}
        self.samples: dict[str, str] = {}
        self.t0 = time.monotonic()
        self.warmup = warmup  # open loop: seconds sent before t0, answered but not recorded
        self.answered = 0  # every 2xx, warm-up included (the CPU readings include them)
        self.slow: dict[int, int] = {}  # second of the run -> requests started then, slower than 1 s

    def pick(self) -> str:
        if self.first:
            return self.first.pop()
        return random.choices(self.kinds, self.weights)[0]

    def call(self, kind: str) -> bool:
        u = random.randrange(len(self.users))
        name, password, token = self.users[u]
        auth = {"Authorization": f"Bearer {token}"}
        if kind == "hot":
            r = self.s.get(f"{self.url}/api/posts/{random.choice(self.hot)}", timeout=30)
        elif kind == "cold":
            r = self.s.get(f"{self.url}/api/posts/{random.choice(self.cold)}", timeout=30)
        elif kind == "front":
            r = self.s.get(f"{self.url}/api/posts", timeout=30)
        elif kind == "healthz":
            r = self.s.get(f"{self.url}/healthz", timeout=30)
        elif kind == "like":
            post = random.choice(self.hot + self.cold)
            undo = (u, post) in self.liked
            (self.liked.discard if undo else self.liked.add)((u, post))
            r = self.s.request("DELETE" if undo else "POST", f"{self.url}/api/actions", headers=auth,
                               json={"action": "like", "target_type": "post", "target_id": post},
                               timeout=30)
        elif kind == "comment":
            r = self.s.post(f"{self.url}/api/posts/{random.choice(self.hot)}/comments", headers=auth,
                            json={"content": f"A comment from the mixed workload, {time.time():.6f}."},
                            timeout=30)
        elif kind == "login":
            r = self.s.post(f"{self.url}/api/auth/login", json={"username": name, "password": password},
                            timeout=30)
        else:
            raise SystemExit(f"unknown kind {kind}")
        if r.status_code >= 300:
            self.samples.setdefault(kind, f"{r.status_code} {r.text[:160]}")
        return r.status_code < 300

    def timed(self, kind: str, start: float) -> None:
        try:
            ok = self.call(kind)
        except Exception as e:  # noqa: BLE001 - a failed request is a figure, not a crash
            ok = False
            self.samples.setdefault(kind, f"{type(e).__name__}: {e}"[:200])
        self.answered += ok
        if start < self.t0:
            return
        if ok:
            took = time.monotonic() - start
            self.lat.setdefault(kind, []).append(took)
            if took > 1.0:
                sec = int(start - self.t0)
                self.slow[sec] = self.slow.get(sec, 0) + 1
        else:
            self.errors[kind] = self.errors.get(kind, 0) + 1

    def result(self, seconds: float, **extra) -> dict:
        kinds = {}
        for kind in sorted(set(self.lat) | set(self.errors)):
            ms = [x * 1000 for x in self.lat.get(kind, [])]
            kinds[kind] = {"count": len(ms), "errors": self.errors.get(kind, 0),
                           **{f"p{p}_ms": round(percentile(ms, p), 1) if ms else None
                              for p in (50, 90, 99)},
                           "max_ms": round(max(ms), 1) if ms else None}
        done = sum(len(v) for v in self.lat.values())
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return {"seconds": round(seconds, 3), "ok": done, "errors": sum(self.errors.values()),
                "rps": round(done / seconds, 1), "answered_all": self.answered, "kinds": kinds,
                "error_samples": self.samples,
                "client_cpu_s": round(ru.ru_utime + ru.ru_stime, 2),
                "slow_by_second": dict(sorted(self.slow.items())), **extra}


def closed(site: Site, conns: int, secs: float, only: str | None) -> dict:
    end = time.monotonic() + secs

    def loop():
        while time.monotonic() < end:
            site.timed(only or site.pick(), time.monotonic())

    t0 = site.t0 = time.monotonic()
    gevent.joinall([gevent.spawn(loop) for _ in range(conns)], timeout=secs + 60)
    return site.result(time.monotonic() - t0, mode="closed", conns=conns, only=only)


def open_loop(site: Site, rate: float, secs: float, max_inflight: int) -> dict:
    pool = gevent.pool.Pool(max_inflight)
    dropped = 0
    start = time.monotonic()
    t0 = site.t0 = start + site.warmup
    at = start
    while at < t0 + secs:
        delay = at - time.monotonic()
        if delay > 0:
            gevent.sleep(delay)
        if pool.full():
            dropped += at >= t0
        else:
            pool.spawn(site.timed, site.pick(), at)
        at += random.expovariate(rate)
    sent_for = time.monotonic() - t0
    pool.join(timeout=60)
    return site.result(sent_for, mode="open", rate=rate, dropped=dropped, warmup_s=t0 - start,
                       drained_s=round(time.monotonic() - t0 - sent_for, 3))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--spec", required=True)
    p.add_argument("mode", choices=["closed", "open"])
    p.add_argument("--conns", type=int, default=64)
    p.add_argument("--secs", type=float, default=20)
    p.add_argument("--only")
    p.add_argument("--rate", type=float)
    p.add_argument("--max-inflight", type=int, default=1000)
    p.add_argument("--warmup", type=float, default=5.0, help="open: seconds sent, not recorded")
    a = p.parse_args()
    with open(a.spec) as f:
        spec = json.load(f)
    site = Site(spec, pool=a.conns, warmup=a.warmup if a.mode == "open" else 0.0)
    res = (closed(site, a.conns, a.secs, a.only) if a.mode == "closed"
           else open_loop(site, a.rate, a.secs, a.max_inflight))
    sys.stdout.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
