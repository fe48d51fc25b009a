"""The comparison's models, one module each: the paper's Table 3 baselines and popularity."""
