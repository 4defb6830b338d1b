"""The service image: built with docker or podman (:mod:`deploy.image.build`) and run the way
the chart runs it (:mod:`deploy.image.containers`)."""
