"""One module per ``diffseg`` sub-command, each with ``add_parser(subparsers)`` setting ``handler``."""
