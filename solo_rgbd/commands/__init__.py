"""One module per subcommand (pretrain, sod, data, compare): compose the config, validate,
and call the engine, methods and tasks. Nothing below imports from here."""
