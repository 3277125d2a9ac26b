"""One module per group of commands; each `cmd_NAME(ctx, args)` returns the exit status."""
