"""Training: `loop.train(run, run_dir, world, sinks, stop)` is the one training function;
`steps.forward_backward`, `optimizer_step` and `evaluate` are the steps it, and the bench, run."""
