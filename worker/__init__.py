"""The generation worker: engines, decoding, batching, the request queue and the HTTP API."""
