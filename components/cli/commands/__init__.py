"""The subcommands of `cataract-cam`, one module each; none imports another."""
