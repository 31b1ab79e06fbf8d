"""Turn scenario results into the markdown report, the targets' verdicts and the plot."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.bench.model import AwsModel
from harness.bench.scenarios import LifecycleResult, SteadyResult


@dataclass
class Cost:
    sqs: float
    dynamodb: float
    lambda_requests: float
    lambda_compute: float
    eventbridge: float

    @property
    def total(self) -> float:
        return self.sqs + self.dynamodb + self.lambda_requests + self.lambda_compute + self.eventbridge


def cost_per_million(result: LifecycleResult, model: AwsModel) -> Cost:
    """USD of AWS requests per 1M tasks, from what the run counted for its tasks (ECS API calls are free)."""
    p = model.prices
    per_task = 1_000_000 / max(1, result.tasks) / 1_000_000  # per-million prices times 1M tasks / tasks run
    return Cost(
        sqs=result.sqs_billed * p.sqs_per_million_requests * per_task,
        dynamodb=(result.wru * p.ddb_per_million_wru + result.rru * p.ddb_per_million_rru) * per_task,
        lambda_requests=(result.launcher_invocations + result.status_invocations)
        * p.lambda_per_million_requests
        * per_task,
        lambda_compute=(result.launcher_gb_s + result.status_gb_s)
        * p.lambda_per_gb_second
        * 1_000_000
        * per_task,
        eventbridge=result.custom_events * p.eventbridge_custom_per_million * per_task,
    )


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.1f} ms"


def _s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:,.1f} s"


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def render(
    results: dict[str, Any], model: AwsModel, *, date: str, commit: str, wall: float
) -> tuple[str, list[str]]:
    """Return (markdown, verdict lines)."""
    steady: dict[str, list[SteadyResult]] = results["steady"]
    life: dict[str, LifecycleResult] = results["lifecycle"]
    ours, ref = life["ours"], life["reference"]
    lines = [
        f"Run {date}, commit `{commit}`, {wall:.0f} s wall clock on this machine. Simulated time; every executor "
        "is charged only its own CPU (emulator time taken out) plus the modelled latency of its requests.",
        "",
        "### 1. Steady state: N running, nothing changes (per scheduler loop)",
        "",
        "| running | ours: requests | reference: requests | ours: blocking | reference: blocking |",
        "|---:|---:|---:|---:|---:|",
    ]
    for o, r in zip(steady["ours"], steady["reference"], strict=True):
        lines.append(
            f"| {o.running:,} | {o.requests_per_loop:g} (max {o.max_requests_per_loop}) | "
            f"{r.requests_per_loop:g} (max {r.max_requests_per_loop}) | {_ms(o.blocking_per_loop)} | "
            f"{_ms(r.blocking_per_loop)} |"
        )
    queue_pair = next(
        ((o, r) for o, r in zip(steady["ours"], steady["reference"], strict=True) if o.queue_loop_blocking),
        None,
    )
    ratio = None
    if queue_pair:
        o, r = queue_pair
        assert o.queue_loop_blocking is not None and r.queue_loop_blocking is not None
        ratio = r.queue_loop_blocking / o.queue_loop_blocking
        lines += [
            "",
            f"{o.running:,} running + {results['extra_queued']} newly queued, one loop: ours "
            f"{_ms(o.queue_loop_blocking)} ({o.queue_loop_requests} requests), reference "
            f"{_ms(r.queue_loop_blocking)} ({r.queue_loop_requests} requests): **{ratio:,.0f}x** less blocking.",
        ]
    ideal = max(0.0, (ours.tasks - model.run_task_call_burst) / model.run_task_calls_per_second)
    lines += [
        "",
        f"### 2. Burst of {ours.tasks:,} queued tasks",
        "",
        "| | ours | reference |",
        "|---|---:|---:|",
        f"| time until all launched | {_s(ours.all_launched_after)} | {_s(ref.all_launched_after)} |",
        f"| share of the modelled launch quota (ideal {ideal:.1f} s) | {_share(ideal, ours)} | {_share(ideal, ref)} |",
        f"| RunTask calls (throttled answers) | {ours.run_task_calls} ({ours.throttled_responses}) | "
        f"{ref.run_task_calls} ({ref.throttled_responses}) |",
        f"| tasks failed by throttling | {ours.failed_by_throttling} | {ref.failed_by_throttling} |",
        f"| longest scheduler loop during the burst | {_s(_longest(ours))} | {_s(_longest(ref))} |",
        "",
        f"### 3. Churn: {ours.tasks:,} running tasks finish over {results['churn_seconds']:g} s",
        "",
        "| | ours | reference |",
        "|---|---:|---:|",
        f"| requests per loop (mean / max) | {_req(ours)} | {_req(ref)} |",
        f"| scheduler blocking per loop (median) | {_ms(_median_blocking(ours))} | {_ms(_median_blocking(ref))} |",
        f"| state latency, container exit → Airflow state (p50 / p95 / p99 / max) | {_lat(ours)} | {_lat(ref)} |",
        f"| tasks not reported | {ours.unreported} | {ref.unreported} |",
        "",
        "### 4. AWS request cost per 1M tasks (whole lifecycle above, list prices)",
        "",
    ]
    c_ours, c_ref = cost_per_million(ours, model), cost_per_million(ref, model)
    lines += [
        "| | ours | reference |",
        "|---|---:|---:|",
        f"| SQS ({ours.sqs_billed / ours.tasks:.2f} billed requests per task) | ${c_ours.sqs:,.2f} | ${c_ref.sqs:,.2f} |",
        f"| DynamoDB ({ours.wru / ours.tasks:.1f} WRU + {ours.rru / ours.tasks:.1f} RRU per task) | "
        f"${c_ours.dynamodb:,.2f} | ${c_ref.dynamodb:,.2f} |",
        f"| Lambda requests ({(ours.launcher_invocations + ours.status_invocations) / ours.tasks:.2f} per task) | "
        f"${c_ours.lambda_requests:,.2f} | ${c_ref.lambda_requests:,.2f} |",
        f"| Lambda GB-s (arm64; launcher {model.launcher_memory_mb} MB, status {model.status_memory_mb} MB) | "
        f"${c_ours.lambda_compute:,.2f} | ${c_ref.lambda_compute:,.2f} |",
        f"| EventBridge custom events ({ours.custom_events / ours.tasks:.1f} per task) | ${c_ours.eventbridge:,.2f} | "
        f"${c_ref.eventbridge:,.2f} |",
        f"| ECS API ({ref.requests['ecs.DescribeTasks'] + ref.requests['ecs.RunTask']:,} requests for the reference) "
        "| free | free |",
        f"| **total** | **${c_ours.total:,.2f}** | **${c_ref.total:,.2f}** |",
        "",
        "Requests counted for ours: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(ours.requests.items(), key=lambda kv: -kv[1])),
        "",
        "### Lambda handlers",
        "",
        "| | launcher | status |",
        "|---|---:|---:|",
    ]
    imports = results["imports"]
    lines += [
        f"| cold import (`-X importtime`, the handler module's cumulative) | {_ms(imports['launcher'][0])} | "
        f"{_ms(imports['status'][0])} |",
        f"| every import in the process, summed (interpreter start-up included) | {_ms(imports['launcher'][1])} | "
        f"{_ms(imports['status'][1])} |",
        f"| warm CPU per record / event (emulator time taken out) | {_ms(ours.launcher_cpu_per_record)} | "
        f"{_ms(ours.status_cpu_per_event)} |",
        "",
    ]
    verdicts = _verdicts(steady, ratio, ours, ideal, c_ours)
    lines += ["### Targets", "", *[f"- {v}" for v in verdicts], "", "### Model", ""]
    lines += [f"- {line}" for line in model.describe()]
    lines += [f"- {line}" for line in EMULATION_NOTES]
    return "\n".join(lines) + "\n", verdicts


EMULATION_NOTES = [
    "Emulation: DynamoDB is moto (in-process; its index is immediately consistent, so index lag is not in the "
    "state latency). ECS, SQS and EventBridge are model backends in harness/bench/emulator.py: moto's ECS allocates an ENI "
    "per awsvpc task and scans all tasks per DescribeTasks, and its SQS visibility runs on the wall clock.",
    "Concurrency: every scheduler loop, launcher and status invocation is a process on simulated time that yields "
    "at each request, so requests from all of them reach the quotas (and writes reach the table) in the order of "
    "their simulated times; the launcher's threads are processes on clocks forked from the invocation's (their "
    "waits overlap, their CPU adds up). moto's index Query is handed only the items its key condition can match "
    "(same answer; moto would sort and measure the whole table per Query).",
    "Steady state: tasks reach RUNNING outside the measurement; for ours the task items are written once by the "
    "real launcher/status writes and cloned into moto's store for the rest (10,000 writes through moto take minutes).",
    "Not modelled: the control plane's scheduled reconciler Lambda, the executor's periodic reconcile "
    "(one BatchGetItem of 100 tracked items per due loop, a full pass every reconcile_interval_seconds, 300 s by "
    "default), the event source's idle long polls, Lambda cold starts (reported separately below as import "
    "times).",
]


def _share(ideal: float, result: LifecycleResult) -> str:
    if not result.all_launched_after:
        return "not all launched"
    if ideal <= 0:
        return "n/a (within the burst bucket)"
    return f"{min(1.0, ideal / result.all_launched_after) * 100:.0f}%"


def _longest(result: LifecycleResult) -> float | None:
    return max((loop.blocking for loop in result.burst_loops), default=None)


def _req(result: LifecycleResult) -> str:
    if not result.churn_loops:
        return "-"
    values = [loop.requests for loop in result.churn_loops]
    return f"{statistics.mean(values):.1f} / {max(values)}"


def _median_blocking(result: LifecycleResult) -> float | None:
    if not result.churn_loops:
        return None
    return statistics.median(loop.blocking for loop in result.churn_loops)


def _lat(result: LifecycleResult) -> str:
    values = result.state_latencies
    if not values:
        return "-"
    return (
        f"{_pct(values, 0.5):.1f} / {_pct(values, 0.95):.1f} / {_pct(values, 0.99):.1f} / {max(values):.1f} s"
    )


def _verdicts(
    steady: dict[str, list[SteadyResult]],
    ratio: float | None,
    ours: LifecycleResult,
    ideal: float,
    cost: Cost,
) -> list[str]:
    worst = max(r.max_requests_per_loop for r in steady["ours"])
    sizes = ", ".join(f"{r.running:,}" for r in steady["ours"])
    share = min(1.0, ideal / ours.all_launched_after) if ours.all_launched_after else 0.0
    return [
        f"{'MET' if worst <= 1 else 'NOT MET'}: 1 request per loop for any N (steady state at {sizes}: at most "
        f"{worst}; the 5-minute reconcile sweep is not in these loops).",
        f"{'MET' if ratio and ratio >= 50 else 'NOT MET'}: >= 50x less scheduler-blocking time at 1,000 running + "
        f"100 newly queued ({'-' if ratio is None else f'{ratio:,.0f}x'}).",
        f"{'MET' if share >= 0.95 and ours.failed_by_throttling == 0 else 'NOT MET'}: >= 95% of the modelled launch "
        f"quota with 0 tasks failed by throttling ({share * 100:.0f}%, {ours.failed_by_throttling} failed, burst of "
        f"{ours.tasks:,}).",
        f"{'MET' if cost.total < 5 else 'NOT MET'}: under $5 of AWS request cost per 1M tasks (${cost.total:,.2f}).",
    ]


def plot(results: dict[str, Any], path: Path, *, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steady: dict[str, list[SteadyResult]] = results["steady"]
    life: dict[str, LifecycleResult] = results["lifecycle"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    colors = {"ours": "tab:blue", "reference": "tab:orange"}
    labels = {"ours": "EcsEventExecutor", "reference": "AwsEcsExecutor"}
    for kind in ("ours", "reference"):
        xs = [r.running for r in steady[kind]]
        axes[0][0].plot(
            xs, [r.requests_per_loop for r in steady[kind]], "o-", color=colors[kind], label=labels[kind]
        )
        axes[0][1].plot(
            xs,
            [r.blocking_per_loop * 1000 for r in steady[kind]],
            "o-",
            color=colors[kind],
            label=labels[kind],
        )
        timeline = life[kind].launch_timeline
        axes[1][0].step(
            timeline, range(1, len(timeline) + 1), where="post", color=colors[kind], label=labels[kind]
        )
        lat = sorted(life[kind].state_latencies)
        if lat:
            axes[1][1].plot(
                lat, [(i + 1) / len(lat) for i in range(len(lat))], color=colors[kind], label=labels[kind]
            )
    axes[0][0].set(
        xscale="log",
        yscale="log",
        xlabel="running tasks",
        ylabel="AWS requests per loop",
        title="Steady state: requests per scheduler loop",
    )
    axes[0][1].set(
        xscale="log",
        yscale="log",
        xlabel="running tasks",
        ylabel="ms per loop",
        title="Steady state: scheduler-blocking time per loop",
    )
    axes[1][0].set(
        xlabel="seconds after the burst was queued",
        ylabel="tasks launched",
        title=f"Burst of {life['ours'].tasks:,}: launches over time",
    )
    axes[1][1].set(
        xlabel="seconds from container exit to Airflow state",
        ylabel="share of tasks",
        title="Churn: state latency (CDF)",
    )
    for row in axes:
        for ax in row:
            ax.grid(True, alpha=0.3)
            ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
