"""The Docker Engine API, served over the engine library."""
