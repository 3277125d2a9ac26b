"""Volumes: named and anonymous volumes, bind mounts and tmpfs."""
