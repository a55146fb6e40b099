"""One module per subcommand: what ``python -m bench SUBCOMMAND`` does once its arguments are parsed."""
