"""The report command's parts: tables, plots and conclusions from tracked runs."""
