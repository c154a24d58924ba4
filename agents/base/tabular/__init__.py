"""Tabular files as the converter writes them and the merger reads them: format detection,
readers, text handling, staged inputs and schema names."""
