"""Studies over many runs: the paper's sweeps, model comparisons, benchmarks and the
embedding figure."""
