"""puller: pull many container images onto a Docker host, concurrently, with sane retries."""

__version__ = "0.2.0"
