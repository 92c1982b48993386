"""Images to batches of views: the one image reader, multi-view datasets, the resumable sampler, the loader."""
