"""Model bindings: which registered model and alias each of the platform's models is served from."""
