"""One module per function family; each handler class describes its model: how it loads,
how it predicts, which shapes it returns. No handler imports another handler."""
