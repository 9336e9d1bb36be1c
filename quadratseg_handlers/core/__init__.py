"""The request lifecycle every function shares: settings, request decoding, the base handler,
instance handlers, and one-line messages. Imports only :mod:`quadratseg_handlers.cvat`."""
