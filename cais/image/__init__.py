"""Images: a content-addressed store, references, manifests, layers and builds."""
