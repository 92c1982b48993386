"""Classification transfer: frozen-backbone linear probe (MoCo protocol) and cosine kNN."""
