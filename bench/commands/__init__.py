"""One module per subcommand of ``python -m bench``: what each does once ``bench.cli`` has parsed it."""
