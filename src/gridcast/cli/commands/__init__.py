"""One module per command (and per `bench` target), each exposing ``register(subparsers)``.

`gridcast.cli.app.COMMANDS` and `gridcast.cli.commands.bench.TARGETS` list them. A command module
imports only argparse, the standard library and gridcast's light modules at the top; the library
is imported inside the function that runs the command.
"""

__all__: list[str] = []
