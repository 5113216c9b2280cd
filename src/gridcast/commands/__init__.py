"""One module per `gridcast` subcommand; each exposes `register(subparsers)`."""
