"""What the test suites (tests/backend, tests/infra) and the tools (tests/bench, tests/chaos)
share, one module per concern: waiting (polling with a deadline), lab (the lab's inventory and
SSH), localstack (private PostgreSQL and Redis), processes (what a suite or the bench starts),
apiclient (the HTTP API as the backend suite calls it).

pytest finds this package through `pythonpath` in tests/pytest.ini; the scripts put tests/ on
sys.path themselves."""
