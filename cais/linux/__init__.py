"""Thin ctypes wrappers of the Linux calls that Python's os module lacks.

Every raw syscall that cais makes lives in this package, once; the layers above read as a story.
"""
