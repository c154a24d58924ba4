"""The dashboards as code; `python -m deploy.grafana.build` writes them."""
