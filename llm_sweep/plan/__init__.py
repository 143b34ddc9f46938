"""The plan command's parts: what each model preset can see in a time budget, from a
throughput that is assumed, read from a bench, or measured here."""
