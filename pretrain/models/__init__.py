"""Networks: staged ResNet backbones, projection heads and augmentation embeddings, the encoder, per-view BatchNorm."""
