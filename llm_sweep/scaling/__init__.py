"""The science of a sweep: the loss law, its fits and intervals, verdicts over seeds, study design."""
