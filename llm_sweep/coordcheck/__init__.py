"""The coordinate check (`python -m llm_sweep.coordcheck`): activations against width or
depth after a few steps, per parametrization, as in Yang et al. 2022 ("Tensor Programs V")."""
