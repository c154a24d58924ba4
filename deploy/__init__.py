"""Deployment files: Grafana dashboards (grafana/) and Prometheus rules (prometheus/)."""
