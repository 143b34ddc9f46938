"""`python -m llm_sweep.report`: see llm_sweep/report/cli.py."""
from llm_sweep.report.cli import main

if __name__ == "__main__":
    main()
