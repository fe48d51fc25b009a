"""Pieces several models share: feature tables and projections, attention, routing, the
ID branch's propagation, early fusion, a heterograph convolution wrapper, and the loss."""
