"""How fast and how big: training steps, loading, probing, manifests."""
