"""The shared engine: inputs, targets, the evaluator, hooks, paths, results, registry."""
