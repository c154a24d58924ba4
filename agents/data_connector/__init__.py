"""data-connector: tests connections to sources and describes what they hold."""
