"""Distributed training over DistDGL partitions: partitioning, the trainer side and a one-machine launcher."""
