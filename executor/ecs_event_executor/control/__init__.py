"""The control plane: its contracts, and the three services the Lambdas run.

Nothing here imports Airflow or Powertools, so the Lambda handlers and the executor use the same code.

Contracts: what crosses a boundary, one module each. The executor, the services and the stack (``infra/``) all
read them; a contract imports no service.

- ``messages``       the launch queue's messages (launch, relaunch, cancel, adopt, ping).
- ``tasks``          the tasks table: lifecycle, schema, item and the conditional writes.
- ``ecs_state``      ECS "Task State Change" events and their mapping to a task's state.
- ``bus``            the events the control plane publishes to its own EventBridge bus.
- ``launch_profiles`` the named launch configurations an Airflow task's queue picks (cdk.json, LAUNCH_PROFILES).

Services: one per Lambda, each a class its handler (``lambdas/<name>/handler.py``) builds and calls, each
deployed by the construct of the same name in ``infra/``.

- ``launching``        ``Launcher``: launch-queue messages -> RunTask -> the tasks table
                       (``lambdas/launcher``, ``infra.launcher.LauncherFunction``).
- ``status_tracking``  ``StatusTracker``: ECS events -> the tasks table (``lambdas/status``,
                       ``infra.status.StatusFunction``).
- ``reconciling``      ``Reconciler``: stale active items -> DescribeTasks -> the same writes
                       (``lambdas/reconciler``, ``infra.reconciler.ReconcilerFunction``); each pass first
                       replays the status function's failed events (``failed_events``).

What the services share: ``run_task`` (RunTask arguments and ``executor_config`` checks), ``pacing`` (the RunTask
rate), ``aws_errors`` (which AWS failures to retry), ``aws_clients`` (the Lambdas' AWS clients: retries and
timeouts inside the function timeout), ``sqs_batch`` (the SQS event source's batches in, partial batch responses
out, for the launcher handler), ``failed_events`` (the status function's on-failure queue, replayed by the
reconciler), ``task_definitions`` (task definitions derived for a task's image:
registered once by the launcher, deregistered when unused by the reconciler). ``workload_guard`` is the launcher's
allow-list: a launch runs
only the Airflow workload of the message's own task instance (docs/security.md).
"""
