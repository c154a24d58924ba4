"""The retry-strategy model: retry or give up, and after how long (issue 13)."""
