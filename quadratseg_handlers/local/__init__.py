"""Running functions without Nuclio: the nuclio_sdk harness, bundles run once, the local
server and its workers, the HTTP client, check, bench and overlays."""
