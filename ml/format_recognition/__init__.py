"""Format recognition: which format a file is in, from its first and last bytes and its name.

`recognition` holds the result types, `sniff` the encoding and dialect rules both recognisers
share, `rules` today's rule-based detection (the baseline), `model` the learned recogniser.
Nothing here imports scikit-learn, MLflow or an agent: the converter imports this package.
"""
