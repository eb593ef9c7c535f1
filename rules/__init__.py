"""The in-repo Pants plugin: target types and rules that run the bundler stages as cached processes."""
