"""The `cais` command line, docker's commands and flags."""
