"""`python -m llm_sweep.design`: see llm_sweep/design/cli.py."""
from llm_sweep.design.cli import main

if __name__ == "__main__":
    main()
