"""Is the data right: scan regions and the masks drawn inside them."""
