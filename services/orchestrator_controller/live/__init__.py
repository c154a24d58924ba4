"""The controller's live settings: the part of its settings a Config resource may change while
it runs (log level, loop periods, request limits), and the Config resource's spelling of them."""
