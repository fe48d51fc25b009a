"""The user-item heterographs and the kernels every model propagates with: relation
backends (torch CSR, DGL, DGL UDF), sampled blocks and layer-wise inference."""
