"""Local mode: the whole system on one machine — moto_server as AWS, the real handlers, a local ECS runner, and a
real Airflow configured with the executor. ``python -m ecs_event_executor.local up|demo`` (see docs/local.md).
"""
