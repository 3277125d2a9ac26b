"""One module per runtime verb (runc's commands); cli.py only parses arguments and calls these.

They live in a subpackage so that `cais.runtime.create` stays the function, not a module.
"""
