"""Every experiment of docs/method.md section 5 by one command: plans of runs at three budgets, a
runner that finishes what is missing, and the report (experiments/reproduce.py)."""
