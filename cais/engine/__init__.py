"""The engine: containers' lifecycle, logs, events and state, as a Python library."""
