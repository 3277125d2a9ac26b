"""`cais build`: Dockerfile parsing, build contexts, the step cache and the builder."""
