"""The control-plane contract shared by the launcher, the status handler and the executor.

Nothing here imports Airflow or Powertools, so the Lambda handlers and the executor use the same code.
"""
