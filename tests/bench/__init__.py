"""`make bench` (tests/bench/run.py, the entry point) in parts, each where a reader would look:

    common.py     where things are, the sizes of a run, the figures, logging, /proc
    stack.py      the stack it starts (PostgreSQL, Redis, gunicorn, Celery), seeds and reads back
    load.py       the load generators: wrk (and its Lua), sio_load.py (Socket.IO) as a child
    scenarios.py  the scenarios and their figures, each paired with its floor
    profiling.py  --profile: py-spy records and their top-frames summaries
    report.py     the targets, the lab's timings, the printed table
    seed_compare.py  --only seed: the seed document's design beside ours (seed_design.py)
    plots.py      the PNGs (latency distributions, ours vs the seed's) from the results JSON
    lab_nginx.py  --lab: through nginx vs straight on a running lab; each lab host's CPU
    lab_mixed.py  --lab-mixed: the whole site under a community's mix on a running lab

sio_load.py, mixed_load.py, bench_noop.py and seed_design.py run as processes of their own
(gevent clients: Socket.IO, the mixed HTTP load; the no-op Celery app; the seed's web and
worker). run.py puts tests/ on sys.path, so this
folder imports as `bench` beside testkit."""
