"""Augmentations that record their parameters, the batched photometric ops, and the parameter vector's layout."""
