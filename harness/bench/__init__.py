"""Side-by-side benchmark of EcsEventExecutor and the Amazon provider's AwsEcsExecutor (``make bench``).

Both executors run in one process against the same emulated AWS (moto for DynamoDB, in-process model backends
for ECS, SQS and EventBridge) under the same model of latency, quotas and prices (bench/model.py), on simulated
time. Results go to stdout, docs/bench.md and docs/bench.png.
"""
