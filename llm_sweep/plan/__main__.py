"""`python -m llm_sweep.plan`: see llm_sweep/plan/cli.py."""
from llm_sweep.plan.cli import main

if __name__ == "__main__":
    main()
