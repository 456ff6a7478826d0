"""Deployment: serving a trained model over HTTP (``deploy.serve``)."""
