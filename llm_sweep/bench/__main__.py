"""`python -m llm_sweep.bench`: see llm_sweep/bench/cli.py."""
from llm_sweep.bench.cli import main

if __name__ == "__main__":
    main()
