"""Hierarchical augmentation invariance pretraining, in rooms from the bottom up.

runs/ (run folders, atomic files, signals, how commands end) and distributed/ (process group, collectives) import
nothing of the method; transforms/ -> data/; models/ -> methods/; config/ reads the registries of the rooms below it;
engine/ builds and trains from a config; `python -m pretrain.train` is the entry point. Imports only point down.
"""
