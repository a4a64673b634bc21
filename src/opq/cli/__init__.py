"""The one `opq` command."""
