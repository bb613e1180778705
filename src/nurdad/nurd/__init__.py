"""Nuisance-Randomized Distillation (Puli et al., ICLR 2022) for background representations.

- `weights`: step I, nuisance randomization, w = p(y) / p(y | z) (numpy/sklearn, no torch).
- `critic`: step II, the critic estimating I((r, y); z) and the dependence penalty (torch).

Import from the submodules, so that weighting does not pull in torch.
"""
