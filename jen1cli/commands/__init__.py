"""One module per `jen1` subcommand; `common` holds what they share."""
