"""Sanity checks for saliency maps (Adebayo et al. 2018): randomization tests and map similarity."""
