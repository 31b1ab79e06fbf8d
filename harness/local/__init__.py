"""Local mode: the whole system on one machine — moto_server as AWS, the real handlers, a local ECS runner, and a
real Airflow configured with the executor. ``python -m harness.local up|demo``, from the
repository's root (see docs/local.md).
"""
