"""The coordinator and its CLI; it never imports docker-py."""
