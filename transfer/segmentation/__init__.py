"""Semantic-segmentation transfer on MMSegmentation 1.x (mmengine Runner)."""
