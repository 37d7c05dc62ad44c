"""The chaos scenarios by name (`run.py --only NAME`), in the order `make chaos` runs them.

Each scenario is a function returning a list of results (accounting.Run.finish); a module per
kind of fault.
"""
from scenarios.deploy import s_rolling_deploy
from scenarios.failover import s_crash_lb, s_crash_redis_master
from scenarios.hosts import s_network_cut, s_poweroff_web
from scenarios.postgresql import s_crash_etcd_member, s_crash_primary, s_partition_primary, s_switchover
from scenarios.scheduler import s_crash_beat_host
from scenarios.services import s_postgres_restart, s_redis_restart
from scenarios.workers import s_kill_workers, s_stop_cpu_worker

SCENARIOS = {
    "kill": s_kill_workers,
    "redis": s_redis_restart,
    "postgres": s_postgres_restart,
    "deploy": s_rolling_deploy,
    "poweroff": s_poweroff_web,
    "netcut": s_network_cut,
    "stop": s_stop_cpu_worker,
    "pg-switchover": s_switchover,
    "pg-crash": s_crash_primary,
    "pg-partition": s_partition_primary,
    "etcd-crash": s_crash_etcd_member,
    "crash-redis": s_crash_redis_master,
    "crash-lb": s_crash_lb,
    "beat": s_crash_beat_host,
}
