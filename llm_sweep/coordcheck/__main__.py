"""`python -m llm_sweep.coordcheck`: see llm_sweep/coordcheck/cli.py."""
from llm_sweep.coordcheck.cli import main

if __name__ == "__main__":
    main()
